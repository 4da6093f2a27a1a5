#!/usr/bin/env bash
# Peak training memory on the CPU against `unireal-train plan`, for f32 / bf16 mixed precision
# and each `train.activation_checkpointing` mode (false, burn, blocks): each case trains configs/train/tiny.yaml's data
# (out/shards/video, Frame2Frame) for 3 steps and reads the largest `peak_mem_gb` (the
# binary's allocator count) from metrics.jsonl. The plan's activation coefficients
# (crates/unireal-train/src/plan.rs) were fitted to these runs; docs/benchmarks.md "Memory plan".
#
#   bash scripts/bench-memory.sh [CASE…]     CASE = NAME:PRESET:RESOLUTION:BATCH:PRECISION:CKPT
#
# PROFILE=dev uses the debug binaries (the dependencies are optimised in the dev profile too).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f out/shards/video/manifest.json ] || {
  echo "error: no shards in out/shards/video"$'\n\n'"hint: cargo run --release -p unireal-data -- build configs/video.yaml" >&2
  exit 2
}
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = dev ]; then
  cargo build --locked --workspace  # the tests' feature set: no Burn rebuild
  BIN="${CARGO_TARGET_DIR:-target}/debug/unireal-train"
else
  cargo build --locked --release -p unireal-train
  BIN="${CARGO_TARGET_DIR:-target}/release/unireal-train"
fi
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(
  tiny-264:tiny:40:4:f32:false tiny-858:tiny:80:4:f32:false
  tiny-264-burn:tiny:40:4:f32:burn tiny-858-burn:tiny:80:4:f32:burn
  tiny-264-blocks:tiny:40:4:f32:blocks tiny-858-blocks:tiny:80:4:f32:blocks
  tiny-264-bf16:tiny:40:4:bf16:false tiny-858-bf16:tiny:80:4:bf16:false
  tiny-264-bf16-burn:tiny:40:4:bf16:burn tiny-858-bf16-burn:tiny:80:4:bf16:burn
  tiny-264-bf16-blocks:tiny:40:4:bf16:blocks tiny-858-bf16-blocks:tiny:80:4:bf16:blocks
  small-264:small:40:2:f32:false small-858:small:80:1:f32:false
  small-858-burn:small:80:1:f32:burn small-858-blocks:small:80:1:f32:blocks
  small-858-bf16:small:80:1:bf16:false small-858-bf16-blocks:small:80:1:bf16:blocks
)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
printf '| case | preset | tokens/sample | batch | precision | checkpointing | measured peak | plan | plan/measured |\n|---|---|---|---|---|---|---|---|---|\n'
for c in "${CASES[@]}"; do
  IFS=: read -r name preset res batch precision ckpt <<<"$c"
  sets=(--set "model.preset=$preset" --set "data.resolution=$res" --set "data.batch_size=$batch"
        --set "train.precision=$precision" --set "train.activation_checkpointing=$ckpt" --set train.steps=3
        --set log.val_every=0 --set log.sample_every=0 --set checkpoint.every=0 --set model.text.max_len=48
        --set model.init.kind=default)
  "$BIN" plan --config configs/train/tiny.yaml "${sets[@]}" 2>/dev/null >"$OUT/$name.plan"
  "$BIN" --config configs/train/tiny.yaml --run-dir "$OUT/$name" -q "${sets[@]}" >"$OUT/$name.log" 2>&1
  python3 - "$OUT/$name" "$c" <<'PY'
import json, sys
d, case = sys.argv[1], sys.argv[2].split(":")
p = json.load(open(d + ".plan"))
peak = max(json.loads(l)["peak_mem_gb"] for l in open(d + "/metrics.jsonl") if '"train"' in l)
s = p["signature"]
print(f"| {case[0]} | {case[1]} | {s['image_tokens'] + s['text_tokens']} | {s['batch']} | {case[4]} | {case[5]} "
      f"| {peak:.3f} GB | {p['total'] / 1e9:.3f} GB | {p['total'] / 1e9 / peak:.2f} |")
PY
done
