#!/usr/bin/env bash
# Installs what is missing, builds sbgm and runs the main demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SBGM_BUILD_DIR:-$root/build}
SBGM_BUILD_DIR=$build SBGM_BUILD_TARGETS=sbgm-schedules "$root/scripts/build.sh"
"$build/examples/sbgm-schedules" "$@"
