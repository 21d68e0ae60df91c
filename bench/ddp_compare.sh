#!/usr/bin/env bash
# Data-parallel MNIST U-Net training throughput, side by side in one run:
# sbgm (sbgm-ddp-bench: sbgm::Trainer on c10d/Gloo) and PyTorch DDP
# (bench/ddp_peer.py: DistributedDataParallel on Gloo, Debian's
# python3-torch), each with 1 and 2 processes of one thread, batch 32 per
# process, the model and step of bench/peer.py's mnist_train. Prints a
# markdown table of images/s (the median of the repeats) for bench/README.
#
#   bench/ddp_compare.sh [--repeat R] [--steps N] [--warmup W] [--batch B]
#                        [--procs P]
# Processes are started as a launcher would (RANK, WORLD_SIZE, LOCAL_RANK,
# MASTER_ADDR=127.0.0.1, a free MASTER_PORT), one config after the other,
# alternating sbgm and PyTorch within each repeat (default 3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repeat=3 steps=60 warmup=10 batch=32 procs=2
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) repeat=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --procs) procs=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
build=${SBGM_BUILD_DIR:-$root/build}
if [ -z "${SBGM_NO_BUILD:-}" ]; then
  SBGM_EXTRA_PACKAGES="python3-torch" SBGM_BUILD_DIR=$build \
    SBGM_BUILD_TARGETS=sbgm-ddp-bench "$root/scripts/build.sh" >&2
fi
py=/usr/bin/python3  # Debian's python3-torch lives here
# One thread per process for OpenMP and OpenBLAS; glibc keeps freed tensor
# memory on both sides (sbgm-ddp-bench calls sbgm::tune_cpu_allocator).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT SLURM_PROCID || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# launch P CMD...: runs P ranks of CMD, prints rank 0's images_per_s.
launch() {
  local p=$1; shift
  local port; port=$(free_port)
  local pids=()
  for ((r = 0; r < p; r++)); do
    if [ "$p" -gt 1 ]; then
      RANK=$r WORLD_SIZE=$p LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 \
        MASTER_PORT=$port "$@" >"$tmp/out.$r" 2>&1 &
    else
      "$@" >"$tmp/out.$r" 2>&1 &
    fi
    pids+=($!)
  done
  local rc=0
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  if [ "$rc" -ne 0 ]; then
    cat "$tmp"/out.* >&2
    echo "a rank failed (exit $rc): $*" >&2
    exit 1
  fi
  cat "$tmp/out.0" >&2
  grep allreduce_ms "$tmp/out.0" >>"$tmp/allreduce" || true
  sed -n 's/.*images_per_s=\([^ ]*\).*/\1/p' "$tmp/out.0"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

args=(--steps "$steps" --warmup "$warmup" --batch "$batch")
declare -A runs
for ((k = 0; k < repeat; k++)); do
  for p in 1 "$procs"; do
    runs[sbgm,$p]+="$(launch "$p" "$build/bench/sbgm-ddp-bench" "${args[@]}") "
    runs[pytorch,$p]+="$(launch "$p" "$py" "$root/bench/ddp_peer.py" "${args[@]}") "
  done
done
med() { tr ' ' '\n' <<<"${runs[$1]}" | sed '/^$/d' | median; }
range() { tr ' ' '\n' <<<"${runs[$1]}" | sed '/^$/d' | sort -g | sed -n '1p;$p' | paste -sd- -; }
s1=$(med sbgm,1) s2=$(med "sbgm,$procs") p1=$(med pytorch,1) p2=$(med "pytorch,$procs")
printf '\nMNIST U-Net training, batch %s per process, one thread each, %s timed steps, median of %s (range)\n\n' \
  "$batch" "$steps" "$repeat"
printf '| images/s | 1 process | %s processes | %s / 1 |\n| --- | ---: | ---: | ---: |\n' "$procs" "$procs"
printf '| sbgm (Trainer, c10d Gloo) | %.0f (%s) | %.0f (%s) | %.2fx |\n' \
  "$s1" "$(range sbgm,1)" "$s2" "$(range "sbgm,$procs")" "$(echo "$s2 / $s1" | bc -l)"
printf '| PyTorch DDP (Gloo) | %.0f (%s) | %.0f (%s) | %.2fx |\n' \
  "$p1" "$(range pytorch,1)" "$p2" "$(range "pytorch,$procs")" "$(echo "$p2 / $p1" | bc -l)"
printf '\nsbgm / PyTorch at %s processes: %.2fx\n' "$procs" "$(echo "$s2 / $p2" | bc -l)"
if [ -s "$tmp/allreduce" ]; then
  # The step's one all-reduce timed alone: the most that overlapping it with
  # the backward pass could win.
  printf 'sbgm all-reduce of the flat gradient (%s floats), alone: %s ms per step of %s ms (median)\n' \
    "$(sed -n 's/.*allreduce_floats=\([^ ]*\).*/\1/p' "$tmp/allreduce" | head -1)" \
    "$(sed -n 's/.*allreduce_ms=\([^ ]*\).*/\1/p' "$tmp/allreduce" | median)" \
    "$(sed -n 's/.*step_ms=\([^ ]*\).*/\1/p' "$tmp/allreduce" | median)"
fi
