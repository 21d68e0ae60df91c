#!/usr/bin/env bash
# The one prepared check for a machine with an NVIDIA GPU and a CUDA PyTorch
# (LibTorch 2.x inside it), but without Debian's packages or GoogleTest.
#
#   scripts/gpu-check.sh --prepare   here (Debian 12): copies what that
#                                    machine lacks into .deps/ (ignored)
#   scripts/gpu-check.sh             there: builds against PyTorch's LibTorch
#                                    with .deps/, runs the CUDA tests, times
#                                    the CUDA paths, writes one report
#
# With the device tool: run(command="scripts/gpu-check.sh", carry=[".deps"]).
# The report goes to $OUT/gpu-report.md (else build-gpu/gpu-report.md); it
# holds the versions, each step's status and time, the CUDA test results
# (CUDA graphs against eager, autocast, MNIST training) and the timings of
# swiss_sample, swiss_sample_graph, mnist_train, mnist_sample and of a
# guided step against an unguided one (conditional_mnist, guided_mnist,
# guided_mnist_every), and of the
# MNIST demo's training and sampling with and without --amp. Everything is
# sized to end within 8 minutes on a 16-core machine; each step has its own
# time limit, and a failed step is reported without stopping the others.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps=$root/.deps

if [ "${1:-}" = --prepare ]; then
  set -e
  "$root/scripts/install-deps.sh"
  rm -rf "$deps"
  mkdir -p "$deps/include" "$deps/lib"
  cp -r /usr/src/googletest "$deps/googletest"
  cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/stb "$deps/include/"
  cp /usr/include/gif_lib.h /usr/include/zlib.h /usr/include/zconf.h "$deps/include/"
  # giflib and zlib as shared objects of Debian 12 (glibc 2.36): they load
  # on any newer glibc.
  cp -L /usr/lib/x86_64-linux-gnu/libgif.so.7 "$deps/lib/libgif.so.7"
  cp -L /usr/lib/x86_64-linux-gnu/libz.so.1 "$deps/lib/libz.so.1"
  ln -sf libgif.so.7 "$deps/lib/libgif.so"
  ln -sf libz.so.1 "$deps/lib/libz.so"
  echo "gpu-check: prepared $(du -sh "$deps" | cut -f1) in $deps; carry .deps"
  exit 0
fi

out=${OUT:-$root/build-gpu}
build=${SBGM_GPU_BUILD_DIR:-$root/build-gpu}
mkdir -p "$out" "$build"
report=$out/gpu-report.md
start=$(date +%s)
: >"$report"
say() { printf '%s\n' "$*" | tee -a "$report"; }
# step NAME LIMIT_S COMMAND...: runs with a time limit, logs to $out/NAME.log
failed=0
step() {
  local name=$1 limit=$2 t0 rc
  shift 2
  t0=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  say "- $name: $([ $rc = 0 ] && echo ok || echo "FAILED (status $rc)") in $(($(date +%s) - t0)) s"
  if [ $rc != 0 ]; then
    failed=1
    tail -n 25 "$out/$name.log" | sed 's/^/      /' >>"$report"
  fi
  return $rc
}

say "# sbgm GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
say "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi not found')"
py=${PYTHON:-python3}
torch_prefix=$($py -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null) || {
  say "- no PyTorch in $py: cannot build"
  exit 1
}
say "- PyTorch: $($py -c 'import torch;print(torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())')"
say "- nvcc: $(nvcc --version 2>/dev/null | tail -n 1 || echo none)"
[ -d "$deps/googletest" ] || {
  say "- .deps/ is missing: run scripts/gpu-check.sh --prepare here and carry .deps"
  exit 1
}
say ""
say "## Build"
jobs=$(nproc)
cmake_args=(-S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
  "-DCMAKE_PREFIX_PATH=$torch_prefix"
  "-DSBGM_GTEST_SOURCE_DIR=$deps/googletest"
  "-DSBGM_STB_INCLUDE_DIR=$deps/include/stb"
  "-DSBGM_JSON_INCLUDE_DIR=$deps/include"
  "-DSBGM_CLI11_INCLUDE_DIR=$deps/include"
  "-DGIF_INCLUDE_DIR=$deps/include" "-DGIF_LIBRARY=$deps/lib/libgif.so"
  "-DZLIB_INCLUDE_DIR=$deps/include" "-DZLIB_LIBRARY=$deps/lib/libz.so"
  "-DCMAKE_BUILD_RPATH=$deps/lib"
  "-DTORCH_CUDA_ARCH_LIST=9.0")
step configure 180 cmake "${cmake_args[@]}" || exit 1
step build 420 cmake --build "$build" -j "$jobs" --target sbgm_tests sbgm-bench sbgm-mnist || exit 1
export LD_LIBRARY_PATH=$deps/lib:${LD_LIBRARY_PATH:-}

say ""
say "## CUDA tests"
# The device-parametrized suites' cuda cases (samplers with CUDA graphs
# against eager, autocast, training steps), the MNIST training test and the
# whole-run checks; CPU cases are what CI runs on Debian.
tests=$build/tests/sbgm_tests
step cuda_tests 240 "$tests" --gtest_filter='*cuda*:*Cuda*:*CUDA*:*Graph*:*Autocast*:*Amp*:MnistTrain*' --gtest_brief=1
say "    $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/cuda_tests.log" | tr '\n' ' ')"
grep -E '^\[  FAILED  \]' "$out/cuda_tests.log" | head -20 | sed 's/^/    /' >>"$report"

say ""
say "## Timings (sbgm-bench --device cuda; microseconds per step, medians)"
bench=$build/bench/sbgm-bench
if step bench 150 "$bench" --device cuda \
  --workload swiss_sample,swiss_sample_graph,mnist_train,mnist_sample,conditional_mnist,guided_mnist,guided_mnist_every; then
  sed -n 's/.*workload=\([a-z_]*\).*us_per_step=\([0-9.]*\).*gflops=\([0-9.]*\).*/| \1 | \2 | \3 |/p' \
    "$out/bench.log" | { say "| workload | µs/step | GFLOP/s |"; say "| --- | ---: | ---: |"; while read -r l; do say "$l"; done; }
fi

say ""
say "## MNIST demo on CUDA, with and without --amp (fixture data, 400 steps of batch 64, 256 samples)"
for amp in off on; do
  name=mnist_demo_amp_$amp
  flags=(--device cuda)
  [ $amp = on ] && flags+=(--amp)
  if step "$name" 120 "$build/examples/sbgm-mnist" "${flags[@]}" \
    --data "$root/tests/data/mnist-tiny" --steps 400 --batch 64 \
    --num-samples 256 --out "$out/$name"; then
    say "    $(grep -E '^trained to step|^sampled ' "$out/$name.log" | tr '\n' ' ')"
  fi
done

say ""
say "Total: $(($(date +%s) - start)) s; $([ $failed = 0 ] && echo 'every step passed' || echo 'some steps FAILED')"
exit $failed
