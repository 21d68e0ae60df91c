#!/usr/bin/env bash
# Installs what is missing, builds sbgm and runs the whole test suite (ctest).
# Extra arguments go to ctest, e.g. scripts/test.sh -R Schedule
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SBGM_BUILD_DIR:-$root/build}
SBGM_BUILD_DIR=$build "$root/scripts/build.sh"
# One intra-op thread per test process: ctest runs as many processes as cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ctest --test-dir "$build" --output-on-failure -j "${SBGM_JOBS:-$(nproc)}" "$@"
