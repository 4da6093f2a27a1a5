#!/usr/bin/env bash
# Renders the preview gallery in headless Chromium and checks the screenshot.
#
#   scripts/preview-check.sh [SHARD_DIR]
#
# Without SHARD_DIR it builds configs/video.yaml into out/shards/video first. Writes
# out/preview/gallery.html, out/preview/gallery.png (1400×2400 screenshot) and
# gallery-seg.png (the page opened filtered to seg, `#task=seg`), and fails when
# the page does not render (no screenshot, or a blank one). Installs Chromium when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "preview-check: installing chromium" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
fi
CHROMIUM=$(command -v chromium || command -v chromium-browser)
cargo build --release --locked -p unireal-data >&2
BIN=${CARGO_TARGET_DIR:-target}/release/unireal-data
DIR=${1:-out/shards/video}
if [ -z "${1:-}" ]; then
  $BIN build configs/video.yaml -q >&2
fi
mkdir -p out/preview
$BIN preview "$DIR" --out out/preview/gallery.html >&2
shot() {  # shot NAME URL-SUFFIX
  rm -f "out/preview/$1.png"
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1400,2400 --screenshot="$PWD/out/preview/$1.png" \
    "file://$PWD/out/preview/gallery.html$2" >/dev/null 2>&1 || true
}
shot gallery ""
shot gallery-seg "#task=seg"
for name in gallery gallery-seg; do
python3 - "out/preview/$name.png" <<'PY'
import struct, sys, zlib
p = sys.argv[1]
try:
    data = open(p, "rb").read()
except OSError:
    sys.exit(f"preview-check: {p} was not written: Chromium did not render the page")
w, h = struct.unpack(">II", data[16:24])
# Decompress and count distinct scanline bytes: a blank page compresses to almost nothing.
idat = b"".join(data[i + 8:i + 8 + struct.unpack(">I", data[i:i + 4])[0]]
                for i in range(8, len(data)) if data[i + 4:i + 8] == b"IDAT")
raw = zlib.decompress(idat)
distinct = len(set(raw[: 4_000_000]))
print(f"preview-check: {p} {w}x{h}, {len(data)} bytes, {distinct} distinct byte values")
if (w, h) != (1400, 2400) or len(data) < 100_000 or distinct < 64:
    sys.exit("preview-check: the screenshot looks blank")
print("preview-check: OK")
PY
done
