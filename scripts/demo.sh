#!/usr/bin/env bash
# Installs what is missing, builds sbgm and runs the main demo: a diffusion
# model trained on the 2-D swiss roll, sampled, with pictures and metrics in
# ${SBGM_DEMO_OUT:-demo-out}. Extra arguments go to sbgm-swiss-roll
# (e.g. --preset seed, --sampler ddim, --dataset moons; see --help).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SBGM_BUILD_DIR:-$root/build}
out=${SBGM_DEMO_OUT:-$root/demo-out}
SBGM_BUILD_DIR=$build SBGM_BUILD_TARGETS=sbgm-swiss-roll "$root/scripts/build.sh"
"$build/examples/sbgm-swiss-roll" --out "$out" "$@"
echo
echo "Pictures: $out/samples.png (samples beside the data), $out/forward.png"
echo "(the forward process q(x_t)), $out/reverse.gif (the reverse process),"
echo "$out/loss.png; numbers in $out/metrics.json."
