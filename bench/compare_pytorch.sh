#!/usr/bin/env bash
# Times sbgm (sbgm-bench) and Python PyTorch (bench/peer.py, Debian's
# python3-torch: the same LibTorch build) on the same workloads in one run,
# one thread each, and prints a table with the ratios.
#
#   bench/compare_pytorch.sh [--threads K] [--iters N] [--workload a,b]
#                            [--repeat R] [--memory]
# Each workload runs R times (default 3), alternating sbgm and PyTorch, and
# the table shows each side's median. Both sides get OMP_NUM_THREADS and
# OPENBLAS_NUM_THREADS = K and the same malloc settings (see below).
# --memory also measures the peak resident memory of MNIST training (the
# mnist_train workload of each side, the MNIST demo's loop) with /usr/bin/time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threads=1 iters=0 workload=all memory=0 repeat=3
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --memory) memory=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
build=${SBGM_BUILD_DIR:-$root/build}
SBGM_EXTRA_PACKAGES="python3-torch time" SBGM_BUILD_DIR=$build \
  SBGM_BUILD_TARGETS=sbgm-bench "$root/scripts/build.sh" >&2
py=/usr/bin/python3  # Debian's python3-torch lives here, not in pyenv's
# The same process settings on both sides: threads for OpenMP and OpenBLAS,
# and glibc's malloc keeping freed tensor memory (sbgm-bench does both itself
# through sbgm::set_num_threads and sbgm::tune_cpu_allocator; Python gets
# them from the environment). Without the malloc settings the Python side
# page-faults its temporaries in again every step and was up to 2x slower
# here, and erratically so.
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
export MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824

if [ "$workload" = all ]; then
  workload=swiss_train,swiss_sample,mnist_train,mnist_sample
fi
declare -A sb py_us flops
IFS=, read -r -a names <<<"$workload"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for w in "${names[@]}"; do
  sa=() pa=()
  for ((r = 0; r < repeat; r++)); do
    a=$("$build/bench/sbgm-bench" --workload "$w" --threads "$threads" --iters "$iters")
    b=$("$py" "$root/bench/peer.py" --workload "$w" --threads "$threads" --iters "$iters")
    echo "$a" >&2
    echo "$b" >&2
    sa+=("$(field us_per_step <<<"$a")")
    pa+=("$(field us_per_step <<<"$b")")
    flops[$w]=$(field flops <<<"$a")
  done
  sb[$w]=$(printf '%s\n' "${sa[@]}" | median)
  py_us[$w]=$(printf '%s\n' "${pa[@]}" | median)
done
printf '\n%-14s %14s %14s %9s %12s\n' workload "pytorch us" "sbgm us" speedup "sbgm GFLOP/s"
for w in "${names[@]}"; do
  awk -v w="$w" -v p="${py_us[$w]}" -v s="${sb[$w]}" -v f="${flops[$w]}" \
    'BEGIN { printf "%-14s %14.1f %14.1f %8.2fx %12.2f\n", w, p, s, p / s, f / s / 1e3 }'
done

if [ "$memory" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  /usr/bin/time -f '%M' -o "$tmp/sbgm.rss" "$build/bench/sbgm-bench" \
    --workload mnist_train --threads "$threads" --iters 50 >/dev/null
  /usr/bin/time -f '%M' -o "$tmp/py.rss" "$py" "$root/bench/peer.py" \
    --workload mnist_train --threads "$threads" --iters 50 >/dev/null
  printf '\npeak RSS of 50 mnist_train steps: pytorch %d MiB, sbgm %d MiB\n' \
    $(($(cat "$tmp/py.rss") / 1024)) $(($(cat "$tmp/sbgm.rss") / 1024))
fi
