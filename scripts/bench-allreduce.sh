#!/usr/bin/env bash
# The all-reduce share of the step time of data-parallel training on the CPU, over MPI.
#
#   scripts/bench-allreduce.sh [STEPS] [PRESETS…]     (defaults: 6 steps; tiny small)
#
# For each preset, in one run on the same shards: `mpirun -np 1` with batch 4 and
# `mpirun -np 2` with batch 2 per rank (the same global batch), at 32 px. The trainer logs
# each step's wall time (`step_s`) and the seconds spent all-reducing the gradients
# (`allreduce_s`, rank 0) in metrics.jsonl; the first step is dropped as warm-up. With np=1
# there is nothing to reduce (the share is 0 by construction: it is the baseline step time).
# Each rank gets CORES/np rayon threads. Record results in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-6}
shift || true
PRESETS=("$@")
[ ${#PRESETS[@]} -gt 0 ] || PRESETS=(tiny small)
bash scripts/setup.sh
cargo build --release --locked -p unireal-data -p unireal-train --features unireal-train/mpi >&2
BIN=${CARGO_TARGET_DIR:-target}/release
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
CORES=$(nproc)
off="{enabled: false}"
"$BIN/unireal-data" build configs/video.yaml -q --set "output=$OUT/shards" --set frames.max_side=128 \
  --set "families={multi_object: $off, insertion: $off, object_add: $off, seg: $off, control: $off}" >&2
cat > "$OUT/train.yaml" <<YAML
model:
  preset: tiny
  latent: {kind: space_to_depth, factor: 2}
  text: {kind: bytes, width: 64, layers: 2, max_len: 64}
data:
  sources: [{path: $OUT/shards, weight: 1.0}]
  resolution: 32
  aspect_ratios: [1.0]
  batch_size: 4
  workers: 1
train: {steps: $STEPS, seed: 0, lr: 0.0005, schedule: {kind: constant, warmup: 0}, ema_decay: 0.0}
log: {val_every: 0, sample_every: 0}
checkpoint: {every: 0, keep: 1}
YAML
export OMPI_MCA_btl_vader_single_copy_mechanism=none
printf '%-6s %3s %6s %10s %12s %8s\n' preset np batch step_s allreduce_s share
for preset in "${PRESETS[@]}"; do
  for np in 1 2; do
    run="$OUT/$preset-$np"
    RAYON_NUM_THREADS=$(( CORES / np > 0 ? CORES / np : 1 )) \
      mpirun --allow-run-as-root --oversubscribe -np "$np" "$BIN/unireal-train" --config "$OUT/train.yaml" \
      --run-dir "$run" -q --set "model.preset=$preset" --set "data.batch_size=$(( 4 / np ))" >/dev/null 2>"$run.log" \
      || { cat "$run.log" >&2; exit 1; }
    python3 - "$run/metrics.jsonl" "$preset" "$np" "$(( 4 / np ))" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l][1:]
step = sum(r["step_s"] for r in rows) / len(rows)
comm = sum(r.get("allreduce_s", 0.0) for r in rows) / len(rows)
print(f"{sys.argv[2]:<6} {sys.argv[3]:>3} {sys.argv[4]:>6} {step:10.3f} {comm:12.4f} {100 * comm / step:7.1f}%")
PY
  done
done
