#!/usr/bin/env bash
# Data-build throughput against decode-only throughput, in one run, on the same files, with
# the same thread count.
#
#   scripts/bench-data.sh [THREADS] [REPEATS]      (defaults: 1 thread, 3 repeats)
#
# decode-only: `ffmpeg -threads T -i FILE -map 0:v:0 -f null -` for each sample video in turn;
# build:       `unireal-data build configs/video.yaml` with workers=1, decode_threads=T, into a
#              fresh directory each time (every frame decoded, analysed; pairs scored, encoded,
#              captioned, written), twice: Frame2Frame only, and all six families (objects
#              segmented over the background model, masks filtered, five more families).
# Both see the same frames; the ratio of frame rates is decode_time / build_time (best of the
# repeats for each). Record results in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-1}
R=${2:-3}
bash scripts/setup.sh
cargo build --release --locked -p unireal-data >&2
BIN=${CARGO_TARGET_DIR:-target}/release/unireal-data
FILES=(datasets/samples/videos/*)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
now() { date +%s.%N; }

best_decode=""
for _ in $(seq "$R"); do
  t0=$(now)
  for f in "${FILES[@]}"; do
    ffmpeg -hide_banner -loglevel error -threads "$T" -i "$f" -map 0:v:0 -f null - </dev/null
  done
  t=$(echo "$(now) - $t0" | bc -l)
  if [ -z "$best_decode" ] || [ "$(echo "$t < $best_decode" | bc -l)" = 1 ]; then best_decode=$t; fi
done

# build VARIANT_NAME EXTRA_SETS... → prints the best time
F2F_ONLY=(--set families.multi_object.enabled=false --set families.insertion.enabled=false
          --set families.object_add.enabled=false --set families.seg.enabled=false
          --set families.control.enabled=false)
time_build() {
  local name=$1; shift
  local best=""
  for i in $(seq "$R"); do
    t0=$(now)
    $BIN build configs/video.yaml -q --set "output=$OUT/$name$i" --set workers=1 --set "decode_threads=$T" \
      --set pairs.max_pairs_per_video=1000000 "$@" 2>/dev/null
    t=$(echo "$(now) - $t0" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}
best_f2f=$(time_build f2f "${F2F_ONLY[@]}")
best_all=$(time_build all)

frames=$(python3 -c "import json,sys; m=json.load(open('$OUT/f2f1/manifest.json')); print(sum(i['stats']['frames'] for i in m['inputs']))")
rows() { python3 -c "import json; t=json.load(open('$OUT/$1/manifest.json'))['totals']; print(t['rows'], dict(sorted(t['tasks'].items())))"; }
printf 'threads=%s files=%s frames=%s\n' "$T" "${#FILES[@]}" "$frames"
printf 'samples (frame2frame only): %s\n' "$(rows f2f1)"
printf 'samples (all families):     %s\n' "$(rows all1)"
printf 'decode-only (ffmpeg -f null):    %.3f s  %.0f frames/s\n' "$best_decode" "$(echo "$frames / $best_decode" | bc -l)"
printf 'build, frame2frame only:         %.3f s  %.0f frames/s\n' "$best_f2f" "$(echo "$frames / $best_f2f" | bc -l)"
printf 'build, all six families:         %.3f s  %.0f frames/s\n' "$best_all" "$(echo "$frames / $best_all" | bc -l)"
printf 'ratio build/decode, frame2frame: %.2fx  (target >= 0.6x)\n' "$(echo "$best_decode / $best_f2f" | bc -l)"
printf 'ratio build/decode, all:         %.2fx\n' "$(echo "$best_decode / $best_all" | bc -l)"
