#!/usr/bin/env bash
# Cached frozen work against running the encoders: configs/train/tiny-t5-vae.yaml (a frozen
# T5 and AutoencoderKL in their Hugging Face / diffusers layouts) trained STEPS steps with the
# encoders in the loop, and STEPS steps after `unireal-train cache`, in one run.
#
#   scripts/bench-cache.sh [STEPS] [--set key=value]…      (default: 20 steps)
#
# Prints the cache build time, the mean step time of each run (after 2 warm-up steps), their
# ratio, and the largest loss difference between them. Record results in docs/benchmarks.md.
# PROFILE=dev uses the debug-profile binaries (dependencies optimised) instead of release.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-20}
shift || true
SETS=(--set "train.steps=$STEPS" --set log.val_every=0 --set log.sample_every=0 --set checkpoint.every=0)
for s in "$@"; do SETS+=("$s"); done
bash scripts/setup.sh
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = dev ]; then
  cargo build --locked --workspace
  BIN=${CARGO_TARGET_DIR:-target}/debug
else
  cargo build --locked --profile "$PROFILE" -p unireal-data -p unireal-train
  BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
fi
[ -f out/shards/video/manifest.json ] || $BIN/unireal-data build configs/video.yaml
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CFG=configs/train/tiny-t5-vae.yaml
$BIN/unireal-train --config $CFG --run-dir "$WORK/live" -q "${SETS[@]}" >/dev/null
start=$(date +%s.%N)
$BIN/unireal-train cache --config $CFG --run-dir "$WORK/cached" -q "${SETS[@]}" >/dev/null
end=$(date +%s.%N)
$BIN/unireal-train --config $CFG --run-dir "$WORK/cached" -q "${SETS[@]}" >/dev/null
python3 - "$WORK/live/metrics.jsonl" "$WORK/cached/metrics.jsonl" "$start" "$end" <<'PY'
import json, sys
def steps(path):
    return [json.loads(l) for l in open(path) if '"kind":"train"' in l.replace(" ", "")]
live, cached = steps(sys.argv[1]), steps(sys.argv[2])
mean = lambda rows: sum(r["step_s"] for r in rows[2:]) / max(1, len(rows) - 2)
diff = max(abs(a["loss"] - b["loss"]) for a, b in zip(live, cached))
print(f"cache build: {float(sys.argv[4]) - float(sys.argv[3]):.1f} s")
print(f"mean step (after 2 warm-up steps): encoders {mean(live):.3f} s, cache {mean(cached):.3f} s, "
      f"cached/live {mean(cached) / mean(live):.2f}x")
print(f"largest loss difference over {len(live)} steps: {diff:.2e}; cache misses: "
      f"{sum(r.get('cache_misses', 0) for r in cached)}")
PY
