#!/usr/bin/env bash
# Builds sbgm's libFuzzer targets with clang and fuzzes them side by side.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s, every target)
#
# Targets: idx (the IDX/MNIST reader, torch-free) and model_file (the
# safetensors container and the model config of sbgm model files). The
# readers' sources are compiled with -fsanitize=fuzzer,address,undefined;
# model_file links the rest of sbgm from ${SBGM_BUILD_DIR:-build} (built
# first when missing) and Debian's LibTorch. Each target starts from its
# committed seed corpus (tests/fuzz/corpus/TARGET) plus what earlier runs
# found (kept in ${SBGM_FUZZ_DIR:-build/fuzz}/corpus/TARGET); a crash,
# sanitizer report, leak (idx), timeout (SBGM_FUZZ_TIMEOUT, 10 s) or
# allocation over 2 GiB (SBGM_FUZZ_SEED fixes libFuzzer's seed; 0: random)
# fails the run and leaves its input in build/fuzz/artifacts/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SBGM_BUILD_DIR:-$root/build}
out=${SBGM_FUZZ_DIR:-$build/fuzz}
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx model_file)

SBGM_EXTRA_PACKAGES="clang libclang-rt-14-dev ${SBGM_EXTRA_PACKAGES:-}" \
  "$root/scripts/install-deps.sh"
if [ ! -f "$build/libsbgm.so" ]; then
  SBGM_BUILD_DIR=$build SBGM_BUILD_TARGETS=sbgm "$root/scripts/build.sh"
fi
mkdir -p "$out/artifacts"

# shellcheck disable=SC2054 # the commas belong to -fsanitize
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined
  -fno-sanitize-recover=undefined -D_GLIBCXX_USE_CXX11_ABI=1)
build_target() {
  case $1 in
    idx)
      clang++ "${flags[@]}" -I"$root/src" "$root/tests/fuzz/idx_fuzz.cpp" \
        "$root/src/data/idx.cpp" -lz -o "$out/idx_fuzz"
      ;;
    model_file)
      clang++ "${flags[@]}" -Wno-deprecated-declarations \
        -I"$root/include" -I"$root/src" \
        -isystem /usr/include/torch/csrc/api/include \
        "$root/tests/fuzz/model_file_fuzz.cpp" "$root/src/io/safetensors.cpp" \
        "$root/src/model_file.cpp" -L"$build" -Wl,-rpath,"$build" -lsbgm \
        -ltorch -ltorch_cpu -lc10 -o "$out/model_file_fuzz"
      ;;
    *)
      echo "fuzz.sh: unknown target '$1' (idx, model_file)" >&2
      return 2
      ;;
  esac
}

pids=()
for t in "${targets[@]}"; do
  build_target "$t"
  mkdir -p "$out/corpus/$t"
  cp -n "$root/tests/fuzz/corpus/$t"/* "$out/corpus/$t/"
done
for t in "${targets[@]}"; do
  # The model target's LibTorch keeps static allocations to the end: no
  # leak check there; both share no globals with their instrumented copy.
  leaks=1
  [ "$t" = model_file ] && leaks=0
  ASAN_OPTIONS="detect_leaks=$leaks:detect_odr_violation=0:allocator_may_return_null=0" \
    OMP_NUM_THREADS=1 "$out/${t}_fuzz" "$out/corpus/$t" \
    -max_total_time="$secs" -timeout="${SBGM_FUZZ_TIMEOUT:-10}" \
    -seed="${SBGM_FUZZ_SEED:-0}" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -artifact_prefix="$out/artifacts/$t-" -print_final_stats=1 \
    >"$out/$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz.sh: $t: ${secs} s, $runs executions, no crash (corpus $(find "$out/corpus/$t" -type f | wc -l) inputs)"
  else
    status=1
    echo "fuzz.sh: $t FAILED; log $out/$t.log:" >&2
    grep -E 'ERROR|SUMMARY|==[0-9]+==|Test unit written|terminate|what\(\)' "$out/$t.log" | head -20 >&2
  fi
done
exit $status
