#!/usr/bin/env bash
# The main job on the bundled samples, end to end:
#   1. build shards of the six video task families from datasets/samples/videos
#      (unireal-data build) and a gallery of them (unireal-data preview),
#   2. train the tiny DiT on them for a few minutes on the CPU (unireal-train),
#   3. sample an edit of a sample's input frame with the trained checkpoint (unireal-infer).
# Outputs: out/shards/video, out/demo/gallery.html, runs/demo (checkpoints, metrics.jsonl, sample grids),
# out/demo/input.*, out/demo/target.* and out/demo/edit.png (with its PSNR against the target).
#   DEMO_STEPS=400 (default) sets the training length; extra arguments go to `unireal-train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p unireal-data -p unireal-train -p unireal-infer
BIN=${CARGO_TARGET_DIR:-target}/release
STEPS=${DEMO_STEPS:-400}

# --force: the demo always rebuilds, so that a build left by an older config does not stop it.
$BIN/unireal-data build configs/video.yaml --force
$BIN/unireal-data verify out/shards/video
$BIN/unireal-data inspect out/shards/video --rows 1
.venv/bin/python scripts/check_shards.py out/shards/video
mkdir -p out/demo
$BIN/unireal-data preview out/shards/video --out out/demo/gallery.html >/dev/null

rm -rf runs/demo
$BIN/unireal-train --config configs/train/tiny.yaml --run-dir runs/demo --set "train.steps=$STEPS" "$@"

# One Frame2Frame sample's input frame and instruction, to edit with the trained model, and its
# target frame, to measure the edit against.
rm -f out/demo/input.* out/demo/target.*
PROMPT=$(.venv/bin/python - <<'PY'
import io, pyarrow.parquet as pq, glob
rows = pq.read_table(sorted(glob.glob("out/shards/video/part-*.parquet"))[0]).to_pylist()
t = next(r for r in rows if r["task"] == "frame2frame")
for name, img in (("input", t["images"][0]), ("target", t["images"][-1])):
    open(f"out/demo/{name}." + ("jpg" if img["encoding"] == "jpeg" else "png"), "wb").write(img["bytes"])
print(t["base_prompt"])
PY
)
INPUT=$(ls out/demo/input.* | head -1)
TARGET=$(ls out/demo/target.* | head -1)
# --target: the sample's own output frame, to measure the edit against (one JSON line).
QUALITY=$($BIN/unireal-infer --checkpoint runs/demo --image "$INPUT" --prompt "$PROMPT" --task frame2frame \
  --seed 0 --out out/demo/edit.png --target "$TARGET")
SCORE=$(.venv/bin/python -c '
import json, sys
q = json.loads(sys.argv[1])
print("PSNR %.1f dB against the target frame; a flat mean-colour image: %.1f dB"
      % (q["psnr_db"] or float("inf"), q["mean_colour_psnr_db"]))' "$QUALITY")
echo "" >&2
echo "shards:   out/shards/video (manifest.json lists them)" >&2
echo "gallery:  out/demo/gallery.html (every family's samples, filterable by task)" >&2
echo "training: runs/demo (metrics.jsonl, samples/*.png: inputs | output | target, checkpoints/)" >&2
echo "edit:     $INPUT + \"$PROMPT\"" >&2
echo "          -> out/demo/edit.png ($SCORE)" >&2
