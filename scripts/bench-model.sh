#!/usr/bin/env bash
# DiT forward + backward on this machine's CPU: Burn's Flex and NdArray backends against the
# same model in PyTorch (scripts/reference/bench_dit.py), in one run, same thread count.
#
#   scripts/bench-model.sh [STEPS] [PRESETS…]      (defaults: 5 steps; tiny small)
#
# Prints median ms per step for each implementation and the ratio PyTorch time / Burn time
# (1.0 = as fast as PyTorch, below 1 = slower). Record results in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-5}
shift || true
PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(tiny small)
THREADS=$(nproc)
bash scripts/setup.sh
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "installing PyTorch (CPU baseline) into .venv" >&2
  .venv/bin/pip install -q torch safetensors
fi
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
cargo bench --locked -p unireal-model --bench dit -- "${PRESETS[@]}" --steps "$STEPS" | grep '^{' >>"$OUT"
.venv/bin/python scripts/reference/bench_dit.py "${PRESETS[@]}" --steps "$STEPS" --threads "$THREADS" >>"$OUT"
python3 - "$OUT" "$THREADS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"threads={sys.argv[2]}  (median of the steps, after one warm-up step)")
print(f"{'preset':8} {'params':>12} {'impl':14} {'ms/step':>10} {'vs PyTorch':>11}")
for preset in dict.fromkeys(r["preset"] for r in rows):
    base = next(r["ms_per_step"] for r in rows if r["preset"] == preset and r["impl"] == "pytorch")
    for r in (r for r in rows if r["preset"] == preset):
        print(f"{preset:8} {r['params']:>12} {r['impl']:14} {r['ms_per_step']:>10.1f} {base / r['ms_per_step']:>10.2f}x")
PY
