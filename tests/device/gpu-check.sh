#!/usr/bin/env bash
# The GPU machine's one command (../shared/device/README.md), from the checkout root:
#
#   bash ../shared/device/pack.sh              # here, once: fills .device/
#   python3 -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
#     -d .device/wheels pytest==9.2.0 iniconfig pluggy   # here: the CUDA tests' runner
#   bash .device/run.sh bash tests/device/gpu-check.sh   # there, with .device carried
#
# 1. the benchmark (project/benchmark.py: step variants with their profiles, time
#    to validation loss 1.47, the monitor's cost, evaluation and sampling speed);
# 2. the workflow's quick validation (snakemake --cores all: results/quick/seed1337/);
# 3. the CUDA-only tests (project/tests/test_step.py), where pytest is installed.
# Each part has a time limit, so the whole fits one 10-minute call; what comes back is
# copied to $OUT (at most 8 files). Exit 0 only if every part passed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
out=${OUT:?set OUT to the folder whose files come back}
status=0

timeout 360 python3 project/benchmark.py /tmp/bench --time-cap-s 60 \
  --variant-timeout-s 100 || status=1
cp /tmp/bench/bench.md /tmp/bench/bench.json "$out/" || status=1

timeout 110 snakemake --cores all || status=1
cp results/quick/seed1337/ml_res.md results/quick/seed1337/monitor/train.json "$out/" || status=1

if python3 -c 'import pytest' 2>/dev/null; then
  timeout 100 python3 -m pytest -q -p no:cacheprovider -s project/tests/test_step.py -k cuda \
    || status=1
else
  echo "gpu-check: pytest is not installed here; the CUDA tests did not run" >&2
  status=1
fi
exit "$status"
