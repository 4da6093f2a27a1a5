#!/usr/bin/env bash
# A remote captioner kept busy (issue 18 point 4): `unireal-data build configs/video.yaml` (all
# six families: Frame2Frame captions and control descriptions go to the endpoint) with
# `captioner: openai` against a local stand-in server (scripts/bench/standin_vlm.py) that
# answers after DELAY seconds and serves SLOTS requests at once, for several values of
# `captioner.concurrency`. Prints, per run: requests, the most the server saw in flight, the
# build's time, the server-bound minimum (requests x DELAY / SLOTS) and the built-in
# captioner's build time, and the ratio of the build's time to the larger of those two: near 1
# means the server's capacity (or decoding), not the build's loop, is the limit.
#
# Then the same for a segmenter program (`objects.segmenter: {kind: command}`): the test
# program crates/unireal-annotate/tests/programs/fake_segmenter.py in its `slow` mode, which
# answers each segment request after DELAY seconds, one request per process, for several
# values of `max_processes` (0: one per worker, each waiting for its answers). The minimum
# there is requests x DELAY / processes.
#
#   scripts/bench-annotator.sh [DELAY_S] [SLOTS] [WORKERS]     (defaults: 0.2 8 2)
set -euo pipefail
cd "$(dirname "$0")/.."
DELAY=${1:-0.2}
SLOTS=${2:-8}
WORKERS=${3:-2}
if [ -z "${UNIREAL_BIN:-}" ]; then
  bash scripts/setup.sh
  cargo build --release --locked -p unireal-data >&2
  UNIREAL_BIN=${CARGO_TARGET_DIR:-target}/release
fi
PY=${UNIREAL_PYTHON:-.venv/bin/python}
PORT=$((20000 + RANDOM % 20000))
OUT=$(mktemp -d)
"$PY" scripts/bench/standin_vlm.py "$PORT" "$DELAY" "$SLOTS" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$OUT"' EXIT
stats() { "$PY" -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "http://127.0.0.1:$PORT/stats" 2>/dev/null; }
for _ in $(seq 50); do stats >/dev/null && break; sleep 0.1; done
now() { date +%s.%N; }

echo "stand-in VLM: ${DELAY} s per request, ${SLOTS} at once; build workers=$WORKERS" >&2
t0=$(now)
"$UNIREAL_BIN/unireal-data" build configs/video.yaml -q --force --set output="$OUT/builtin" --set workers="$WORKERS" 2>/dev/null
t_local=$(echo "$(now) - $t0" | bc -l)
printf 'built-in captioner (no endpoint): %.2f s\n' "$t_local"
stats >/dev/null
for c in 1 2 4 8 16; do
  t0=$(now)
  "$UNIREAL_BIN/unireal-data" build configs/video.yaml -q --force --set output="$OUT/c$c" --set workers="$WORKERS" \
    --set "captioner={kind: openai, base_url: 'http://127.0.0.1:$PORT/v1', model: standin, concurrency: $c, retries: 0}" 2>/dev/null
  t=$(echo "$(now) - $t0" | bc -l)
  s=$(stats)
  n=$(echo "$s" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['requests'])")
  most=$(echo "$s" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['most_in_flight'])")
  bound=$(echo "$n * $DELAY / $SLOTS" | bc -l)
  # The build cannot beat its own decoding (the built-in run) nor the server's capacity.
  floor=$(echo "if ($bound > $t_local) $bound else $t_local" | bc -l)
  printf 'concurrency %2d: %3d requests, at most %2d in flight, %6.2f s; server-bound minimum %5.2f s, built-in %5.2f s: x%.2f of the larger\n' \
    "$c" "$n" "$most" "$t" "$bound" "$t_local" "$(echo "$t / $floor" | bc -l)"
done

echo "stand-in segmenter program: ${DELAY} s per segment request, one request per process" >&2
t0=$(now)
"$UNIREAL_BIN/unireal-data" build configs/video.yaml -q --force --set output="$OUT/motion" --set workers="$WORKERS" 2>/dev/null
t_motion=$(echo "$(now) - $t0" | bc -l)
printf 'built-in motion segmenter: %.2f s\n' "$t_motion"
for p in 0 2 4 8; do
  log="$OUT/seglog$p"
  mkdir -p "$log"
  t0=$(now)
  "$UNIREAL_BIN/unireal-data" build configs/video.yaml -q --force --set output="$OUT/s$p" --set workers="$WORKERS" \
    --set "objects.segmenter={kind: command, command: [$PY, crates/unireal-annotate/tests/programs/fake_segmenter.py, slow, '$log', '$DELAY'], max_processes: $p}" 2>/dev/null
  t=$(echo "$(now) - $t0" | bc -l)
  n=$(wc -l <"$log/in_flight")
  most=$(sort -n "$log/in_flight" | tail -1)
  procs=$p
  [ "$p" = 0 ] && procs=$WORKERS
  bound=$(echo "$n * $DELAY / $procs" | bc -l)
  floor=$(echo "if ($bound > $t_motion) $bound else $t_motion" | bc -l)
  printf 'max_processes %d: %3d requests, at most %d in flight, %6.2f s; program-bound minimum %5.2f s, motion segmenter %5.2f s: x%.2f of the larger\n' \
    "$p" "$n" "$most" "$t" "$bound" "$t_motion" "$(echo "$t / $floor" | bc -l)"
done
