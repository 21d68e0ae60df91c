#!/usr/bin/env bash
# Configures and builds sbgm into ${SBGM_BUILD_DIR:-build} (Release, Ninja;
# a unity build when the folder is new, see SBGM_UNITY below).
# Extra arguments go to cmake's configure step.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
build=${SBGM_BUILD_DIR:-$root/build}
jobs=${SBGM_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
args=(-S "$root" -B "$build" -G Ninja "-DCMAKE_BUILD_TYPE=${SBGM_BUILD_TYPE:-Release}")
[ -n "${CMAKE_PREFIX_PATH:-}" ] && args+=("-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH")
[ -n "${Torch_DIR:-}" ] && args+=("-DTorch_DIR=$Torch_DIR")
# ccache, where installed, keeps rebuilds of unchanged sources cheap
# (SBGM_CCACHE=0 turns it off).
if [ "${SBGM_CCACHE:-1}" = 1 ] && command -v ccache >/dev/null; then
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# SBGM_UNITY=1: a unity build (12 sources per translation unit), about 3x
# less compile time for a whole build, but an edit recompiles its whole batch
# (CI uses it). A new build folder gets one unless SBGM_UNITY=0 (for work on
# the sources: one file per edit); an existing folder keeps its setting.
if [ -z "${SBGM_UNITY:-}" ] && [ ! -f "$build/CMakeCache.txt" ]; then
  SBGM_UNITY=1
fi
[ -n "${SBGM_UNITY:-}" ] && args+=("-DCMAKE_UNITY_BUILD=$([ "$SBGM_UNITY" = 1 ] && echo ON || echo OFF)" -DCMAKE_UNITY_BUILD_BATCH_SIZE=12)
cmake "${args[@]}" "$@" >/dev/null
cmake --build "$build" -j "$jobs" ${SBGM_BUILD_TARGETS:+--target $SBGM_BUILD_TARGETS}
