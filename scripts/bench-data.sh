#!/usr/bin/env bash
# Data-build throughput against decode-only throughput, in one run, on the same files, with
# the same number of threads.
#
#   scripts/bench-data.sh [THREADS] [REPEATS]      (defaults: all cores, 3 repeats)
#
# decode-only: `ffmpeg -i FILE -map 0:v:0 -f null -`, the faster of two ways to use T threads:
#              one file after another with `-threads T`, and T files at once with `-threads 1`
#              each (faster on short clips); the ratios are against what the machine can decode;
# build:       `unireal-data build configs/video.yaml` into a fresh directory each time (every
#              frame decoded, analysed; pairs scored, encoded, captioned, written), the faster of
#              workers=1 decode_threads=T and workers=T decode_threads=1, twice: Frame2Frame only,
#              and all six families (objects segmented over the background model, masks
#              filtered, five more families).
# Both see the same frames; the ratio of frame rates is decode_time / build_time (best of the
# repeats and ways for each). Record results in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-$(nproc)}
R=${2:-3}
bash scripts/setup.sh
cargo build --release --locked -p unireal-data >&2
BIN=${CARGO_TARGET_DIR:-target}/release/unireal-data
FILES=(datasets/samples/videos/*)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
now() { date +%s.%N; }

# best VAR SECONDS: keeps the smaller.
best() { if [ -z "${!1}" ] || [ "$(echo "$2 < ${!1}" | bc -l)" = 1 ]; then printf -v "$1" '%s' "$2"; fi; }
best_seq=""
best_par=""
for _ in $(seq "$R"); do
  t0=$(now)
  for f in "${FILES[@]}"; do
    ffmpeg -hide_banner -loglevel error -threads "$T" -i "$f" -map 0:v:0 -f null - </dev/null
  done
  best best_seq "$(echo "$(now) - $t0" | bc -l)"
  t0=$(now)
  # (xargs gives each ffmpeg /dev/null as stdin; a redirect here would starve xargs itself)
  printf '%s\0' "${FILES[@]}" | xargs -0 -P "$T" -I{} \
    ffmpeg -nostdin -hide_banner -loglevel error -threads 1 -i {} -map 0:v:0 -f null -
  best best_par "$(echo "$(now) - $t0" | bc -l)"
done
best_decode=$best_seq
best best_decode "$best_par"

# build VARIANT_NAME EXTRA_SETS... → prints the best time
F2F_ONLY=(--set families.multi_object.enabled=false --set families.insertion.enabled=false
          --set families.object_add.enabled=false --set families.seg.enabled=false
          --set families.control.enabled=false)
time_build() {
  local name=$1; shift
  local fastest=""
  for i in $(seq "$R"); do
    for way in "workers=1 decode_threads=$T" "workers=$T decode_threads=1"; do
      local sets=()
      for kv in $way; do sets+=(--set "$kv"); done
      rm -rf "$OUT/$name$i"
      t0=$(now)
      # $(time_build …) runs without set -e: a failed build must not pass for a fast one.
      $BIN build configs/video.yaml -q --set "output=$OUT/$name$i" "${sets[@]}" \
        --set pairs.max_pairs_per_video=1000000 "$@" 2>"$OUT/$name.log" || {
        echo "error: the build failed:" >&2; cat "$OUT/$name.log" >&2; exit 1; }
      best fastest "$(echo "$(now) - $t0" | bc -l)"
    done
  done
  echo "$fastest"
}
best_f2f=$(time_build f2f "${F2F_ONLY[@]}") || exit 1
best_all=$(time_build all) || exit 1

frames=$(python3 -c "import json,sys; m=json.load(open('$OUT/f2f1/manifest.json')); print(sum((i.get('stats') or {}).get('frames', 0) for i in m['inputs']))")
rows() { python3 -c "import json; t=json.load(open('$OUT/$1/manifest.json'))['totals']; print(t['rows'], dict(sorted(t['tasks'].items())))"; }
printf 'threads=%s files=%s frames=%s\n' "$T" "${#FILES[@]}" "$frames"
printf 'samples (frame2frame only): %s\n' "$(rows f2f1)"
printf 'samples (all families):     %s\n' "$(rows all1)"
printf 'decode-only, files in turn:      %.3f s  (-threads %s)\n' "$best_seq" "$T"
printf 'decode-only, files at once:      %.3f s  (%s at a time, -threads 1)\n' "$best_par" "$T"
printf 'decode-only (the faster):        %.3f s  %.0f frames/s\n' "$best_decode" "$(echo "$frames / $best_decode" | bc -l)"
printf 'build, frame2frame only:         %.3f s  %.0f frames/s\n' "$best_f2f" "$(echo "$frames / $best_f2f" | bc -l)"
printf 'build, all six families:         %.3f s  %.0f frames/s\n' "$best_all" "$(echo "$frames / $best_all" | bc -l)"
printf 'ratio build/decode, frame2frame: %.2fx  (goal >= 0.85x)\n' "$(echo "$best_decode / $best_f2f" | bc -l)"
printf 'ratio build/decode, all:         %.2fx  (goal >= 0.5x, then 0.7x)\n' "$(echo "$best_decode / $best_all" | bc -l)"
