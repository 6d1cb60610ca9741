#!/usr/bin/env bash
# Smoke test of the container image: build it with Docker or Podman, then inside it, as an
# arbitrary UID with no passwd entry and the real text mounted read-only,
#   1. torch.compile a small function (HOME/USER/cache variables, compiler present),
#   2. `python run.py --epochs 2` (the quick validation; the CPU preset where there is no GPU),
#   3. the workflow's `report` stage (Snakemake in the image's working directory),
# and check the report. Prints the build time, image size and run times at the end.
#
# Usage (from anywhere; takes 10-20 minutes on 2 cores):
#   docker/smoke-test.sh
# Settings, all optional, as environment variables:
#   ENGINE           docker | podman (default: docker if a Docker engine answers, else podman)
#   IMAGE            tag to build (default chargpt-workflow:smoke)
#   BASE_IMAGE       base for the build (default: the Dockerfile's CUDA base); the special
#                    value `debootstrap` makes a local Debian bookworm base with debootstrap
#                    (needs root; for machines that cannot pull from a registry)
#   EXTRA_CA         a CA bundle handed to the build as the extra_ca secret (TLS-inspecting
#                    proxy); the run itself needs no network (the text comes from the mirror)
#   TORCH_INDEX_URL  index for torch and its dependencies (default: the Dockerfile's, CUDA)
#   TORCH_WHEEL_DIR  a folder holding a torch wheel (e.g. a CPU build); served over
#                    http://127.0.0.1:$WHEEL_PORT (default 38417) to the build as
#                    TORCH_FIND_LINKS (needs host networking)
#   BUILD_NETWORK    network for the build (default host)
#   DATA_MIRROR      mirror folder with tinyshakespeare/input.txt (default ../shared/data)
#   RUN_UID          UID:GID to run as (default 12345:12345, deliberately not in /etc/passwd)
#   WORK_DIR         where the run's results go (default: a new temporary folder, kept)
#   SNAKEMAKE_ARGS   extra arguments for the report stage (e.g. --config ...)
#   SKIP_BUILD=1     reuse an existing IMAGE
#   SKIP_RUN=1       only build IMAGE (and the debootstrap base): no runs (docker/compose-test.sh)
#
# What ran on the development machine (no Docker engine, no registry; see docs/containers.md):
#   ENGINE=podman BASE_IMAGE=debootstrap EXTRA_CA=/etc/ssl/certs/ca-certificates.crt \
#   TORCH_INDEX_URL=https://pypi.org/simple TORCH_WHEEL_DIR=/opt/wheels docker/smoke-test.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-chargpt-workflow:smoke}
BASE_IMAGE=${BASE_IMAGE:-}
EXTRA_CA=${EXTRA_CA:-}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
TORCH_WHEEL_DIR=${TORCH_WHEEL_DIR:-}
BUILD_NETWORK=${BUILD_NETWORK:-host}
DATA_MIRROR=${DATA_MIRROR:-$REPO/../shared/data}
RUN_UID=${RUN_UID:-12345:12345}
SNAKEMAKE_ARGS=${SNAKEMAKE_ARGS:-}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_RUN=${SKIP_RUN:-0}
DEBOOTSTRAP_BASE=localhost/chargpt-smoke-base:bookworm
CODE_DIR=/opt/chargpt

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'smoke-test: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

# ------------------------------------------------------------------ engine
if [ -z "${ENGINE:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v podman >/dev/null; then
    ENGINE=podman
  else
    die "neither a Docker engine nor podman is available"
  fi
fi
engine_args=()
run_args=()
if [ "$ENGINE" = podman ]; then
  # Sandboxed machines may refuse the default rlimits: start from none, keep the host's.
  if [ -z "${CONTAINERS_CONF:-}" ]; then
    CONTAINERS_CONF=$(mktemp --suffix=.conf)
    printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
    export CONTAINERS_CONF
  fi
  if [ -n "${PODMAN_RUNTIME:-}" ]; then
    engine_args+=(--runtime "$PODMAN_RUNTIME")
  elif command -v runc >/dev/null; then
    engine_args+=(--runtime runc)
  fi
  run_args+=(--ulimit host)
fi
engine() { "$ENGINE" "${engine_args[@]}" "$@"; }
log "engine: $ENGINE ($("$ENGINE" --version))"

# ------------------------------------------------------------------ cleanup
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ base image
make_debootstrap_base() {
  if engine image exists "$DEBOOTSTRAP_BASE" 2>/dev/null \
    || engine image inspect "$DEBOOTSTRAP_BASE" >/dev/null 2>&1; then
    log "base image $DEBOOTSTRAP_BASE already there"
    return
  fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  local rootfs
  rootfs=$(mktemp -d /var/tmp/chargpt-rootfs.XXXXXX)
  log "making $DEBOOTSTRAP_BASE with debootstrap (Debian bookworm, python3)"
  debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
  tar -C "$rootfs" -c . | engine import - "$DEBOOTSTRAP_BASE" >/dev/null
  rm -rf "$rootfs"
}

build_args=()
if [ "$BASE_IMAGE" = debootstrap ]; then
  [ "$SKIP_BUILD" = 1 ] || make_debootstrap_base
  build_args+=(--build-arg "BASE_IMAGE=$DEBOOTSTRAP_BASE")
elif [ -n "$BASE_IMAGE" ]; then
  build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi
[ -z "$TORCH_INDEX_URL" ] || build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
if [ -n "$EXTRA_CA" ]; then
  [ -r "$EXTRA_CA" ] || die "EXTRA_CA=$EXTRA_CA is not a readable file"
  build_args+=(--secret "id=extra_ca,src=$EXTRA_CA")
fi

# ------------------------------------------------------------------ local torch wheels
if [ -n "$TORCH_WHEEL_DIR" ] && [ "$SKIP_BUILD" != 1 ]; then
  compgen -G "$TORCH_WHEEL_DIR/torch-*.whl" >/dev/null || die "no torch wheel in $TORCH_WHEEL_DIR"
  [ "$BUILD_NETWORK" = host ] || die "TORCH_WHEEL_DIR needs BUILD_NETWORK=host"
  # A fixed port keeps TORCH_FIND_LINKS, and so the build cache, the same from run to run.
  port=${WHEEL_PORT:-38417}
  python3 -m http.server --bind 127.0.0.1 --directory "$TORCH_WHEEL_DIR" "$port" >/dev/null 2>&1 &
  server_pid=$!
  served=""
  for _ in $(seq 50); do
    kill -0 "$server_pid" 2>/dev/null || break # port taken: set WHEEL_PORT
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" \
      2>/dev/null && { served=1; break; }
    sleep 0.2
  done
  [ -n "$served" ] || die "cannot serve $TORCH_WHEEL_DIR on 127.0.0.1:$port (set WHEEL_PORT)"
  build_args+=(--build-arg "TORCH_FIND_LINKS=http://127.0.0.1:$port/")
  log "serving $TORCH_WHEEL_DIR at http://127.0.0.1:$port/ (pid $server_pid)"
fi

# ------------------------------------------------------------------ build
revision=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
build_seconds=0
if [ "$SKIP_BUILD" != 1 ]; then
  log "building $IMAGE"
  start=$(now)
  format_args=()
  # Podman writes OCI images by default, which drop SHELL (and so `pipefail`).
  [ "$ENGINE" != podman ] || format_args=(--format docker)
  engine build "${format_args[@]}" --network "$BUILD_NETWORK" -f "$REPO/docker/Dockerfile" -t "$IMAGE" \
    --build-arg VERSION=smoke --build-arg "REVISION=$revision" "${build_args[@]}" "$REPO"
  build_seconds=$(( $(now) - start ))
fi
[ "$server_pid" = "" ] || { kill "$server_pid" 2>/dev/null || true; server_pid=""; }
size_bytes=$(engine image inspect --format '{{.Size}}' "$IMAGE")
if [ "$SKIP_RUN" = 1 ]; then
  printf '\nbuilt %s (%s): %s s, %s MB\n' "$IMAGE" "$ENGINE" "$build_seconds" $(( size_bytes / 1000000 ))
  exit 0
fi

# ------------------------------------------------------------------ run
[ -f "$DATA_MIRROR/tinyshakespeare/input.txt" ] \
  || die "no $DATA_MIRROR/tinyshakespeare/input.txt: set DATA_MIRROR to a mirror folder"
DATA_MIRROR=$(cd "$DATA_MIRROR" && pwd)
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/chargpt-smoke.XXXXXX)}
mkdir -p "$WORK_DIR/results" "$WORK_DIR/data_cache"
chown -R "$RUN_UID" "$WORK_DIR/results" "$WORK_DIR/data_cache" 2>/dev/null \
  || chmod -R a+rwX "$WORK_DIR/results" "$WORK_DIR/data_cache"

container() {
  engine run --rm "${run_args[@]}" --user "$RUN_UID" \
    -e CHARGPT_DATA_MIRROR=/mirror \
    -v "$DATA_MIRROR:/mirror:ro" \
    -v "$WORK_DIR/results:$CODE_DIR/results" \
    -v "$WORK_DIR/data_cache:$CODE_DIR/data_cache" \
    "$IMAGE" "$@"
}

log "torch.compile as UID $RUN_UID"
start=$(now)
container python -c '
import getpass, os, torch
f = torch.compile(lambda x: torch.sin(x) * 2 + 1)
y = f(torch.linspace(0, 1, 64))
print("user", getpass.getuser(), "uid", os.getuid(), "torch", torch.__version__,
      "cuda", torch.version.cuda, "compiled sum", round(float(y.sum()), 4))
print("inductor cache:", sorted(os.listdir(os.environ["TORCHINDUCTOR_CACHE_DIR"]))[:3])
'
compile_seconds=$(( $(now) - start ))

log "python run.py --epochs 2 (quick validation)"
start=$(now)
# Its own output folder: the workflow below must start from nothing, not from these files.
container bash -c "cd $CODE_DIR/project && python run.py --epochs 2 --out-dir $CODE_DIR/results/run-py"
train_seconds=$(( $(now) - start ))
for f in train_summary.json metrics.json samples.txt checkpoints/best.pt; do
  [ -s "$WORK_DIR/results/run-py/$f" ] || die "run.py made no $f"
done

log "snakemake report"
start=$(now)
# shellcheck disable=SC2086  # SNAKEMAKE_ARGS is a list of words on purpose
container snakemake --cores "$(nproc)" --until report $SNAKEMAKE_ARGS
report_seconds=$(( $(now) - start ))

mapfile -t reports < <(find "$WORK_DIR/results" -name ml_res.md)
[ "${#reports[@]}" -ge 1 ] || die "the report stage made no ml_res.md under $WORK_DIR/results"
for report in "${reports[@]}"; do
  [ -s "$report" ] || die "$report is empty"
  grep -qi "loss" "$report" || die "$report reports no loss"
  owner=$(stat -c %u:%g "$report")
  [ "$owner" = "$RUN_UID" ] || die "$report is owned by $owner, not $RUN_UID"
done

summary=$(cat <<TXT
smoke test passed ($ENGINE, image $IMAGE)
  build:            ${build_seconds} s
  image size:       $(( size_bytes / 1000000 )) MB
  torch.compile:    ${compile_seconds} s
  run.py --epochs 2: ${train_seconds} s
  report stage:     ${report_seconds} s
  report:           ${reports[*]}
TXT
)
printf '\n%s\n' "$summary" | tee "$WORK_DIR/smoke-summary.txt"
