#!/usr/bin/env bash
# Kill-and-resume soak (issue 17): a video build, an import and a training run, each killed
# with SIGKILL at random moments ROUNDS times and resumed each time, then compared with an
# uninterrupted run of the same job:
#   build, import: the same sample ids (none twice) with the same content, no temporary file
#                  or lock left, `unireal-data verify` clean;
#   training:      the same loss at every step and the same final weights (byte-equal
#                  safetensors), no partial checkpoint left.
#
#   scripts/soak.sh [ROUNDS] [SEED]     (defaults: 20 rounds, seed from the clock; both printed)
#
# Kill moments are random (kill_at); a round whose job finished before its kill counts as not
# killed. Uses the binaries in UNIREAL_BIN (default: builds the
# release ones). The test command runs `soak.sh 5` on the debug binaries it just built.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
SEED=${2:-$(date +%s)}
echo "soak: $ROUNDS rounds per job, seed $SEED (rerun: scripts/soak.sh $ROUNDS $SEED)" >&2
if [ -z "${UNIREAL_BIN:-}" ]; then
  bash scripts/setup.sh
  cargo build --release --locked -p unireal-data -p unireal-train --bins >&2
  UNIREAL_BIN=${CARGO_TARGET_DIR:-target}/release
fi
DATA=$UNIREAL_BIN/unireal-data
TRAIN=$UNIREAL_BIN/unireal-train
PY=${UNIREAL_PYTHON:-.venv/bin/python}
W=$(mktemp -d)
# (a job of ours still running when the script ends is killed first)
trap 'if [ -n "$JOB" ]; then kill -KILL -- "-$JOB" 2>/dev/null || true; fi; rm -rf "$W"' EXIT
now() { date +%s.%N; }
# kill_at ROUND DURATION JOB: a moment from the seed, the job and the round, uniform in
# (0.05 s, 0.5 s + 3 DURATION / ROUNDS): the rounds' kills together span the job about 1.5
# times, so that most of them land in work still to do.
kill_at() {
  awk -v s="$SEED" -v r="$1" -v t="$2" -v j="$3" -v n="$ROUNDS" \
    'BEGIN { srand(s * 1000 + j * 100 + r); printf "%.2f", 0.05 + rand() * (0.45 + 3 * t / n) }'
}

# run_killed SECONDS CMD: runs CMD in its own process group and SIGKILLs the whole group after
# SECONDS unless it ended; returns 200 when this killed it, else CMD's status (a 137 of its
# own, the OOM killer's, is a failure). Returns only once every process of the group is gone:
# a killed process holds its lock until it has exited.
JOB=""
run_killed() {
  local t=$1 cmd=$2 pid rc=0 killed=0 deadline
  set +m  # (no job control: the background job keeps setsid's process group)
  setsid bash -c "$cmd" &
  pid=$!
  JOB=$pid
  deadline=$(echo "$(now) + $t" | bc -l)
  # (a finished job stays a zombie until `wait`: state Z)
  while [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
    if [ "$(echo "$(now) >= $deadline" | bc -l)" = 1 ]; then
      kill -KILL -- "-$pid" 2>/dev/null || true
      killed=1
      break
    fi
    sleep 0.02
  done
  wait "$pid" || rc=$?
  while pgrep -g "$pid" >/dev/null; do sleep 0.02; done
  JOB=""
  if [ "$killed" = 1 ] && [ "$rc" != 0 ]; then return 200; fi
  return "$rc"
}

# soak NAME JOB_INDEX FIRST_CMD RESUME_CMD: runs the job uninterrupted into $W/NAME-ref (timed),
# then killed ROUNDS times into $W/NAME and resumed to the end.
declare -A KILLS
soak() {
  local name=$1 j=$2 first=$3 resume=$4
  local t0 t1 dur k=0 r t rc
  t0=$(now)
  export OUT=$W/$name-ref
  eval "$first" >/dev/null 2>"$W/$name-ref.log" || { cat "$W/$name-ref.log" >&2; exit 1; }
  t1=$(now)
  dur=$(echo "$t1 - $t0" | bc -l)
  printf '%s: uninterrupted %.1f s\n' "$name" "$dur" >&2
  local cmd=$first
  export OUT=$W/$name
  for r in $(seq "$ROUNDS"); do
    t=$(kill_at "$r" "$dur" "$j")
    rc=0
    run_killed "$t" "$cmd" >/dev/null 2>"$W/$name.log" || rc=$?
    if [ "$rc" = 200 ]; then
      k=$((k + 1))
    elif [ "$rc" != 0 ]; then
      echo "$name: round $r (killed at $t s) ended with status $rc:" >&2
      cat "$W/$name.log" >&2
      exit 1
    fi
    cmd=$resume
  done
  eval "$resume" >/dev/null 2>"$W/$name.log" || { cat "$W/$name.log" >&2; exit 1; }
  if [ "$k" = 0 ]; then
    echo "$name: no round killed the job (each finished first): nothing was tested" >&2
    exit 1
  fi
  KILLS[$name]=$k
}

# Shards compared by sample id and content (pyarrow alone), none twice, nothing left over.
same_shards() {
  "$PY" - "$1" "$2" <<'EOF'
import hashlib, json, sys
from pathlib import Path
import pyarrow.parquet as pq

def rows(d):
    d = Path(d)
    leftovers = [p.name for p in d.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".") ]
    assert not leftovers, f"{d}: left behind: {leftovers}"
    m = json.loads((d / "manifest.json").read_text())
    out = {}
    for s in m["shards"]:
        t = pq.read_table(d / s["file"]).to_pylist()
        for r in t:
            assert r["sample_id"] not in out, f"{d}: {r['sample_id']} twice"
            # meta may carry timings; the content is the images and prompts
            h = hashlib.blake2b(repr((r["task"], r["base_prompt"], r["context_prompt"], r["split"],
                                      [(i["role"], i["bytes"]) for i in r["images"]])).encode()).hexdigest()
            out[r["sample_id"]] = h
    inputs = sorted((i["path"], i["status"], i["samples"]) for i in m["inputs"])
    return out, inputs

a, ia = rows(sys.argv[1])
b, ib = rows(sys.argv[2])
assert a, f"{sys.argv[1]}: the uninterrupted run gave no sample"

assert a.keys() == b.keys(), f"sample ids differ: {len(a.keys() - b.keys())} only uninterrupted, {len(b.keys() - a.keys())} only soaked"
diff = [k for k in a if a[k] != b[k]]
assert not diff, f"{len(diff)} samples differ in content, e.g. {diff[:3]}"
assert ia == ib, f"input records differ:\n{ia}\n{ib}"
print(len(a))
EOF
}

# 1. The video build: all six families over the sample clips.
BUILD="\"$DATA\" build configs/video.yaml -q --set output=\$OUT --set workers=2"
soak build 1 "$BUILD" "$BUILD"
n_build=$(same_shards "$W/build-ref" "$W/build")
"$DATA" verify "$W/build" >/dev/null 2>"$W/verify.log" || { cat "$W/verify.log" >&2; exit 1; }

# 2. An import: an image folder with captions (the `images` format), small units.
mkdir -p "$W/images"
for k in $(seq 40); do
  for f in datasets/samples/images/*; do
    b=$(basename "${f%.*}")
    cp "$f" "$W/images/$k-$(basename "$f")"
    echo "a photo of $b, copy $k" > "$W/images/$k-$b.txt"
  done
done
IMPORT="\"$DATA\" import images \"$W/images\" --out \$OUT -q --set unit_rows=8 --set max_side=256 --set workers=2"
soak import 2 "$IMPORT" "$IMPORT"
n_import=$(same_shards "$W/import-ref" "$W/import")
"$DATA" verify "$W/import" >/dev/null 2>"$W/verify.log" || { cat "$W/verify.log" >&2; exit 1; }

# 3. Training: the tiny preset on the soak's own Frame2Frame shards, a checkpoint every 3 steps.
cat > "$W/train.yaml" <<EOF
model: {preset: tiny, latent: {kind: space_to_depth, factor: 2}, text: {kind: bytes, width: 32, layers: 1, max_len: 48}}
data: {sources: [{path: "$W/build-ref", weight: 1.0}], resolution: 32, batch_size: 4, workers: 2, prefetch: 2}
train: {steps: 24, lr: 0.002, schedule: {kind: constant, warmup: 2}, ema_decay: 0.9}
log: {val_every: 0, sample_every: 0}
checkpoint: {every: 3, keep: 2}
EOF
TRAIN_FIRST="if [ -d \$OUT/checkpoints ] && ls \$OUT/checkpoints | grep -q '^step-'; then \"$TRAIN\" --run-dir \$OUT --resume -q; else \"$TRAIN\" --config \"$W/train.yaml\" --run-dir \$OUT -q; fi"
soak train 3 "$TRAIN_FIRST" "$TRAIN_FIRST"
"$PY" - "$W/train-ref" "$W/train" <<'EOF'
import json, sys
from pathlib import Path

def run(d):
    d = Path(d)
    left = [p.name for p in (d / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert not left and not (d / ".lock").exists(), f"{d}: left behind: {left}"
    losses = {}
    for line in (d / "metrics.jsonl").read_text().splitlines():
        v = json.loads(line)
        if v.get("kind") == "train":
            assert v["step"] not in losses, f"{d}: step {v['step']} logged twice"
            losses[v["step"]] = v["loss"]
    last = sorted((d / "checkpoints").iterdir())[-1]
    return losses, (last / "model.safetensors").read_bytes(), (last / "ema.safetensors").read_bytes(), last.name

la, ma, ea, na = run(sys.argv[1])
lb, mb, eb, nb = run(sys.argv[2])
assert sorted(la) == list(range(1, 25)), f"uninterrupted run: steps {sorted(la)}"

assert na == nb, (na, nb)
assert la == lb, f"losses differ: {[(s, la.get(s), lb.get(s)) for s in sorted(set(la) | set(lb)) if la.get(s) != lb.get(s)][:5]}"
assert ma == mb and ea == eb, "the final weights differ"
EOF

echo "soak passed: seed $SEED, $ROUNDS rounds per job;" \
  "build: ${KILLS[build]} killed, $n_build samples equal;" \
  "import: ${KILLS[import]} killed, $n_import samples equal;" \
  "training: ${KILLS[train]} killed, 24 steps' losses and final weights equal" >&2
