#!/usr/bin/env bash
# Installs what is missing, builds sbgm and runs the whole test suite (ctest).
# Extra arguments go to ctest, e.g. scripts/test.sh -R Schedule
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SBGM_BUILD_DIR:-$root/build}
SBGM_BUILD_DIR=$build "$root/scripts/build.sh"
# One intra-op thread per test process: ctest runs as many processes as
# cores. (Count them first: nproc obeys OMP_NUM_THREADS, and counted after
# the export it said 1, which ran the suite one test at a time.)
jobs=${SBGM_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
