#!/usr/bin/env bash
# A demo's run of N steps equals, bit for bit, one of N/2 steps resumed to N;
# and Ctrl-C (SIGINT) or SIGTERM during training writes a checkpoint, exits
# with 128 + the signal, and --resume carries on to the same end.
# Usage: demo_faults.sh SIGNAL EXE OUT N [demo flags...]
set -euo pipefail
sig=$1 exe=$2 out=$3 n=$4
shift 4
flags=("$@")
rm -rf "$out"
mkdir -p "$out"
fail() {
  echo "demo_faults: $*" >&2
  exit 1
}
run() { # dir steps [extra]
  local dir=$1 steps=$2
  shift 2
  "$exe" "${flags[@]}" --steps "$steps" --out "$out/$dir" "$@" >"$out/$dir.log" 2>&1 ||
    fail "$exe --steps $steps --out $out/$dir $* failed: $(tail -5 "$out/$dir.log")"
}
same() { # what a b
  cmp -s "$2" "$3" || fail "$1 differs: $2 vs $3"
}

# Exact resume.
run full "$n"
run half $((n / 2))
run half "$n" --resume
same "the final checkpoint" "$out/full/checkpoint.pt" "$out/half/checkpoint.pt"
same "the samples" "$out/full/samples.npy" "$out/half/samples.npy"

# A signal once training has printed its first progress line.
"$exe" "${flags[@]}" --steps "$n" --out "$out/sig" >"$out/sig.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q '^step ' "$out/sig.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
grep -q '^step ' "$out/sig.log" || fail "no progress line: $(tail -5 "$out/sig.log")"
kill "-$sig" "$pid"
rc=0
wait "$pid" || rc=$?
case $sig in
  INT) want=130 ;;
  TERM) want=143 ;;
  *) fail "unknown signal $sig" ;;
esac
[ "$rc" = "$want" ] || fail "exit status $rc after SIG$sig, expected $want: $(tail -5 "$out/sig.log")"
grep -q "the checkpoint is '.*checkpoint.pt': run the same command with --resume" "$out/sig.log" ||
  fail "no resume hint: $(tail -3 "$out/sig.log")"
[ -f "$out/sig/checkpoint.pt" ] || fail "no checkpoint after SIG$sig"
[ ! -f "$out/sig/samples.npy" ] || fail "sampled after SIG$sig"
stopped=$(grep -o 'at step [0-9]*' "$out/sig.log" | head -1)
run sig "$n" --resume
same "the checkpoint after SIG$sig and --resume" "$out/full/checkpoint.pt" "$out/sig/checkpoint.pt"
same "the samples after SIG$sig and --resume" "$out/full/samples.npy" "$out/sig/samples.npy"
echo "demo_faults: $(basename "$exe"): exact resume and SIG$sig $stopped of $n hold"
