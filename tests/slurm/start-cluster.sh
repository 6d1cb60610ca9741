#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for tests/test_slurm.py and for trying
# profiles/slurm by hand. Debian bookworm's slurm-wlm 22.05 (installed if missing), run as
# root (CI does):
#
#   tests/slurm/start-cluster.sh          # install if needed, configure, start, wait
#   tests/slurm/start-cluster.sh stop     # stop the daemons it started, remove its files
#   tests/slurm/start-cluster.sh status   # sinfo and which daemons run
#
# The node has CPUs=2 and two GPUs declared as `Gres=gpu:2`. THESE GPUS ARE A FAKE: no GPU
# behind them. gres.conf names two device files, /var/lib/chargpt-slurm/fake-gpu0 and
# fake-gpu1, that are copies of /dev/null (character device 1:3; SLURM wants a device file),
# so that SLURM schedules, allocates and accounts `--gpus=1` like on a GPU cluster and sets
# CUDA_VISIBLE_DEVICES. Jobs must run with `device: cpu`.
#
# Accounting (what `sacct` reads, and what the Snakemake SLURM executor polls): slurmdbd
# backed by MariaDB (the jobcomp/* plugins do not feed sacct). One cluster `chargpt-test`,
# one partition `gpu`, one account `chargpt` with root in it: the defaults of
# profiles/slurm/config.yaml. Memory is not enforced and processes are tracked through /proc
# (no cgroups), so this runs in containers and VMs too.
#
# Idempotent: a second start rewrites the same files and starts only what is not running
# (daemons whose configuration changed are restarted). It refuses to touch a slurm.conf
# that it did not write.
set -euo pipefail

readonly STATE=/var/lib/chargpt-slurm # fake GPUs, pid files, spool, logs
readonly CONF=/etc/slurm
readonly MARIADB_PID=/run/mysqld/chargpt-slurm.pid # a folder that mariadbd (mysql) can write
readonly MARKER="# Written by chargpt tests/slurm/start-cluster.sh"
readonly CLUSTER=chargpt-test PARTITION=gpu ACCOUNT=chargpt
readonly NODE_CPUS=2 NODE_GPUS=2
NODE=$(hostname -s)
readonly NODE

log() { printf '[slurm-cluster] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Is the process in pid file $1 alive?
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Wait up to $2 seconds for command "${@:3}" to succeed; $1 names what we wait for.
wait_for() {
    local what=$1 seconds=$2 i
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what did not come up within ${seconds}s (logs: $STATE/log/)"
}

install_packages() {
    local missing=()
    local pair
    # command:package (slurm-wlm: slurmctld, slurmd, the client commands and plugins).
    for pair in slurmctld:slurm-wlm slurmd:slurm-wlm sacct:slurm-wlm slurmdbd:slurmdbd \
        munged:munge mariadbd:mariadb-server; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # Services that the packages start themselves (where they can) are used as they are.
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# Write stdin to $CONF/$1 with mode $2 and owner $3; a changed file is added to CHANGED.
write_config() {
    local path=$CONF/$1 mode=$2 owner=$3 new
    new=$(cat)
    if [[ ! -f $path ]] || [[ $(cat "$path") != "$new" ]]; then
        printf '%s\n' "$new" >"$path"
        CHANGED+=("$1")
    fi
    chmod "$mode" "$path"
    chown "$owner" "$path"
}

write_configs() {
    if [[ -f $CONF/slurm.conf ]] && ! grep -qF "$MARKER" "$CONF/slurm.conf"; then
        die "$CONF/slurm.conf exists and was not written by this script; not touching it"
    fi
    install -d -m 755 "$CONF"
    install -d -m 755 -o slurm -g slurm "$STATE" "$STATE/log" "$STATE/run" \
        "$STATE/ctld" "$STATE/slurmd"
    # The FAKE GPUs: device files with /dev/null's numbers, no GPU behind them.
    local i
    for ((i = 0; i < NODE_GPUS; i++)); do
        [[ -c $STATE/fake-gpu$i ]] && continue
        rm -f "$STATE/fake-gpu$i"
        mknod -m 666 "$STATE/fake-gpu$i" c 1 3
    done

    # Memory is not enforced (no cgroups); declare at least 16 GB so that the profile's
    # default mem_mb fits on small CI machines too (config_overrides: trust this file).
    local real_mb
    real_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    ((real_mb < 16000)) && real_mb=16000

    CHANGED=()
    write_config slurm.conf 644 root:root <<EOF
$MARKER (a one-node test cluster).
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups: processes are tracked through /proc, nothing is confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
# A job past its time limit gets SIGTERM, then SIGKILL KillWait seconds later (longer than
# gpu_monitor.py's own 10 s grace for the job it wraps).
KillWait=15
OverTimeLimit=0
MinJobAge=300
# Accounting through slurmdbd: sacct sees every job, its TRES (gres/gpu too), its comment.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations,limits
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$real_mb Gres=gpu:$NODE_GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    write_config gres.conf 644 root:root <<EOF
$MARKER.
# FAKE GPUs: /dev/null under other names, no GPU. SLURM only counts and hands them out.
NodeName=$NODE Name=gpu File=$STATE/fake-gpu[0-$((NODE_GPUS - 1))]
EOF
    write_config cgroup.conf 644 root:root <<EOF
$MARKER.
# Unused: slurm.conf selects no cgroup plugin (proctrack/linuxproc, task/none), so that the
# cluster runs where cgroups cannot be delegated (containers, CI). Nothing is constrained.
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=no
EOF
    write_config slurmdbd.conf 600 slurm:slurm <<EOF
$MARKER.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
# MariaDB through its local socket; the database user 'slurm' logs in by unix_socket
# (as the Unix user slurmdbd runs as), so no password is stored anywhere.
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StorageLoc=slurm_acct_db
EOF
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -m 755 -o munge -g munge /run/munge
    log "starting munged"
    runuser -u munge -- munged
    touch "$STATE/run/munged.ours"
    wait_for munged 20 bash -c 'munge -n </dev/null | unmunge'
}

start_mariadb() {
    if mariadb-admin ping >/dev/null 2>&1; then return 0; fi
    install -d -m 755 -o mysql -g mysql /run/mysqld
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
    log "starting mariadbd"
    setsid mariadbd --user=mysql --pid-file="$MARIADB_PID" \
        >"$STATE/log/mariadbd.log" 2>&1 </dev/null &
    wait_for mariadbd 60 mariadb-admin ping
}

# The database user of slurmdbd, by unix_socket (root is one already on Debian).
setup_database() {
    mariadb <<'EOF'
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

# Start daemon $1 (args "${@:2}") unless its pid file $STATE/run/$1.pid names a live
# process; restart it when the configuration it reads changed.
start_daemon() {
    local name=$1 pidfile=$STATE/run/$1.pid
    shift
    if running "$pidfile"; then
        ((${#CHANGED[@]} == 0)) && return 0
        log "restarting $name (changed: ${CHANGED[*]})"
        stop_pid "$name" "$pidfile"
    else
        log "starting $name"
    fi
    "$name" "$@"
    wait_for "$name" 30 running "$pidfile"
}

setup_accounts() {
    # slurmctld registers the cluster; add the account and root's association once.
    wait_for "cluster $CLUSTER in slurmdbd" 60 \
        bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER"
    if [[ -z $(sacctmgr -n -P list account "$ACCOUNT" format=account) ]]; then
        sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" \
            description="chargpt test account" >/dev/null
    fi
    if [[ -z $(sacctmgr -n -P list assoc user=root account="$ACCOUNT" format=user) ]]; then
        sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    fi
}

node_idle() { [[ $(sinfo -h -n "$NODE" -o '%T') == idle ]]; }

# SIGTERM the process in pid file $2, wait for it to end (SIGKILL after 30 s).
stop_pid() {
    local name=$1 pidfile=$2 pid i
    running "$pidfile" || return 0
    pid=$(cat "$pidfile")
    log "stopping $name ($pid)"
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
}

start() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts daemons)"
    install_packages
    write_configs
    start_munge
    start_mariadb
    setup_database
    start_daemon slurmdbd
    wait_for slurmdbd 30 sacctmgr -n list cluster
    start_daemon slurmctld
    setup_accounts
    start_daemon slurmd -N "$NODE"
    # A node that was down (an earlier run's slurmd stopped) is resumed.
    if [[ $(sinfo -h -n "$NODE" -o '%T') == down* ]]; then
        scontrol update nodename="$NODE" state=resume
    fi
    wait_for "node $NODE idle" 60 node_idle
    sinfo -N -o '%N %P %T %c %G %m'
    log "up: partition $PARTITION, account $ACCOUNT, $NODE_GPUS FAKE GPUs"
}

stop() {
    stop_pid slurmd "$STATE/run/slurmd.pid"
    stop_pid slurmctld "$STATE/run/slurmctld.pid"
    stop_pid slurmdbd "$STATE/run/slurmdbd.pid"
    stop_pid mariadbd "$MARIADB_PID"
    # munged only if this script started it (it may serve other things on this machine).
    if [[ -e $STATE/run/munged.ours ]]; then
        stop_pid munged /run/munge/munged.pid
        rm -f "$STATE/run/munged.ours"
    fi
    # And the files it wrote: with a slurm.conf whose controller is down, every `scontrol`
    # waits about 9 s for an answer, and so does every snakemake start (the SLURM executor
    # plugin asks `scontrol show config` for MinJobAge when it loads). start writes them anew.
    local file
    for file in slurm.conf gres.conf cgroup.conf slurmdbd.conf; do
        if grep -qsF "$MARKER" "$CONF/$file"; then rm -f "$CONF/$file"; fi
    done
}

status() {
    local name pidfile
    for name in slurmd slurmctld slurmdbd mariadbd; do
        pidfile=$STATE/run/$name.pid
        [[ $name == mariadbd ]] && pidfile=$MARIADB_PID
        if running "$pidfile"; then echo "$name: running"; else echo "$name: stopped"; fi
    done
    sinfo -N -o '%N %P %T %c %G %m' 2>&1 || true
}

case ${1:-start} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 [start|stop|status]" ;;
esac
