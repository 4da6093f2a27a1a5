#!/usr/bin/env bash
# The one prepared GPU check (issue 14): builds unireal-train with the `cuda` feature, trains
# `tiny` for 20 steps in f32 and in bf16 mixed precision, times 5 steps of `base` at 512² px in
# bf16 without and with activation checkpointing (per-block recomputation), and prints for each
# run the step time, tokens/s, model TFLOP/s, MFU and the GPU's peak memory (nvidia-smi, sampled
# every 0.2 s)
# beside what `unireal-train plan` predicted. Meant to fit in 8 minutes on one H100/H200 once
# the build is done; record its output in docs/benchmarks.md.
#
#   bash scripts/gpu-check.sh [SHARDS]       (default SHARDS: out/shards/video)
#
# The GPU machine needs no FFmpeg: build the shards where FFmpeg is
# (unireal-data build configs/video.yaml) and bring out/shards along. Environment:
# PEAK_TFLOPS (the GPU's peak dense TFLOP/s for MFU; by default the binary looks the GPU up in
# its table of known devices, at each run's precision), CARGO_PROFILE (default dev: the
# dependencies are optimised in it), GPU_CHECK_OUT (default out/gpu-check).
set -euo pipefail
# SHARDS relative to where the script is called from.
SHARDS="$(realpath -m "${1:-$(dirname "$0")/../out/shards/video}")"
cd "$(dirname "$0")/.."
PROFILE="${CARGO_PROFILE:-dev}"
OUT="${GPU_CHECK_OUT:-out/gpu-check}"
if [ ! -f "$SHARDS/manifest.json" ]; then
  echo "error: no shards in $SHARDS" >&2
  echo >&2
  echo "hint: unireal-data build configs/video.yaml (on a machine with FFmpeg), then bring out/shards here" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found: this check needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2

t0=$(date +%s)
echo "building unireal-train --features cuda (profile $PROFILE)" >&2
cargo build --locked --profile "$PROFILE" -p unireal-train --features cuda
DIR="${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
BIN="$DIR/unireal-train"
echo "built in $(( $(date +%s) - t0 )) s" >&2

rm -rf "$OUT" && mkdir -p "$OUT"
# The GPU training uses: the first of CUDA_VISIBLE_DEVICES, else 0.
GPU="${CUDA_VISIBLE_DEVICES:-0}"
GPU="${GPU%%,*}"
SOURCE="data.sources=[{path: \"$SHARDS\", weight: 1.0, tasks: [frame2frame]}]"
COMMON=(--set "$SOURCE" --set log.val_every=0 --set log.sample_every=0 --set checkpoint.every=0)
[ -z "${PEAK_TFLOPS:-}" ] || COMMON+=(--set "train.peak_tflops=$PEAK_TFLOPS")

# run NAME STEPS TIMEOUT_S SET...: trains with nvidia-smi sampling memory.used, then prints one
# summary line (steps after the first: the first compiles and autotunes kernels).
run() {
  local name=$1 steps=$2 limit=$3
  shift 3
  local sets=("${COMMON[@]}" --set "train.steps=$steps" "$@")
  "$BIN" plan --config configs/train/tiny.yaml "${sets[@]}" 2>"$OUT/$name.plan.txt" >"$OUT/$name.plan.json" ||
    { echo "plan for $name failed:" >&2; cat "$OUT/$name.plan.txt" >&2; echo '{"total": 0, "activations": 0}' >"$OUT/$name.plan.json"; }
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 -i "$GPU" \
    >"$OUT/$name.mem" 2>/dev/null &
  local smi=$!
  local t=$(date +%s) rc=0
  timeout "$limit" "$BIN" --config configs/train/tiny.yaml --run-dir "$OUT/$name" -q "${sets[@]}" \
    >"$OUT/$name.log" 2>&1 || rc=$?
  kill "$smi" 2>/dev/null || true
  wait "$smi" 2>/dev/null || true
  python3 - "$OUT" "$name" "$rc" "$(( $(date +%s) - t ))" <<'PY' || echo "$name: no summary (see $OUT/$name.log)" >&2
import json, statistics, sys
out, name, rc, wall = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
plan = json.load(open(f"{out}/{name}.plan.json"))
mem = [int(l) for l in open(f"{out}/{name}.mem") if l.strip().isdigit()]
try:
    steps = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if '"train"' in l and l.endswith("\n")]
except FileNotFoundError:
    steps = []
timed = steps[1:] or steps
med = lambda k: statistics.median(s[k] for s in timed) if timed and all(k in s for s in timed) else float("nan")
line = {
    "run": name, "exit": rc, "wall_s": int(wall), "steps": len(steps),
    "loss_first": steps[0]["loss"] if steps else None, "loss_last": steps[-1]["loss"] if steps else None,
    "step_s": med("step_s"), "tokens_per_s": med("tokens_per_s"), "tflops_per_s": med("tflops_per_s"),
    "mfu": med("mfu"), "gpu_peak_gb": max(mem) * 2**20 / 1e9 if mem else None,
    "plan_gb": plan["total"] / 1e9, "plan_activations_gb": plan["activations"] / 1e9,
}
print(json.dumps(line))
print(f"{name:>16}: exit {rc}, {len(steps)} steps, step {line['step_s']:.3f} s, "
      f"{line['tokens_per_s']:.0f} tokens/s, {line['tflops_per_s']:.1f} TFLOP/s, MFU {line['mfu']:.3f}, "
      f"GPU peak {line['gpu_peak_gb'] or 0:.2f} GB (plan {line['plan_gb']:.2f} GB)", file=sys.stderr)
PY
  # The final checkpoint is written as in any run (timed in wall_s), not kept: base's is 16 GB.
  rm -rf "$OUT/$name/checkpoints"
  [ "$rc" = 0 ] || { echo "$name failed (exit $rc); last lines of $OUT/$name.log:" >&2; tail -5 "$OUT/$name.log" >&2; }
}

TINY=(--set data.resolution=64 --set data.batch_size=8)
run tiny-f32 20 90 "${TINY[@]}" --set train.precision=f32
run tiny-bf16 20 90 "${TINY[@]}" --set train.precision=bf16
# base at 512² px: space-to-depth by 8 gives a VAE's token count (32×32 patches per frame)
# without VAE weights; Frame2Frame, one input and one output frame.
BASE=(--set model.preset=base --set "model.latent={kind: space_to_depth, factor: 8}" --set model.init.kind=default
      --set data.resolution=512 --set data.batch_size=2 --set train.precision=bf16 --set train.ema_decay=0.999)
# Each run ends by writing its checkpoint (16 GB for base), inside its time limit.
run base-bf16 5 150 "${BASE[@]}"
run base-bf16-blocks 5 150 "${BASE[@]}" --set train.activation_checkpointing=blocks
echo "gpu-check: $(( $(date +%s) - t0 )) s in all; per-run files in $OUT" >&2
