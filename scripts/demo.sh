#!/usr/bin/env bash
# The main job on the bundled samples: build Frame2Frame shards from datasets/samples/videos,
# verify them and show a few rows. (Training and sampling come with `unireal-train`, which is
# not built yet: this script says so at the end.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p unireal-data
BIN=target/release/unireal-data
$BIN build configs/video.yaml "$@"
$BIN verify out/shards/video
$BIN inspect out/shards/video --rows 2
.venv/bin/python scripts/check_shards.py out/shards/video
echo "shards: out/shards/video (manifest: out/shards/video/manifest.json)" >&2
echo "note: training (unireal-train) and sampling are not built yet; this demo stops at the shards." >&2
