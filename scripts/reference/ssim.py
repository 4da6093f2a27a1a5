#!/usr/bin/env python3
"""Reference SSIM values from scikit-image for crates/unireal-vision/tests/reference.rs.

Run from the repository root (needs numpy, pillow, scikit-image; CPU only):
    .venv/bin/pip install scikit-image pillow
    .venv/bin/python scripts/reference/ssim.py
Writes crates/unireal-vision/tests/fixtures/ssim.json: pairs of small 8-bit gray images (as
flat lists) cut from the bundled sample photographs, with
skimage.metrics.structural_similarity(a, b, data_range=255) — the UniReal toolkit's call.
"""
import json
from pathlib import Path

import numpy as np
import skimage
from PIL import Image
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/unireal-vision/tests/fixtures/ssim.json"


def gray(name: str) -> np.ndarray:
    img = Image.open(ROOT / "datasets/samples/images" / name).convert("L")
    return np.asarray(img, dtype=np.uint8)


def main() -> None:
    rng = np.random.default_rng(0)
    astro, coffee, cat = gray("astronaut.png"), gray("coffee.png"), gray("chelsea.png")
    h, w = 48, 64
    a = astro[200:200 + h, 200:200 + w]
    cases = {
        "identical": (a, a),
        "shift_2px": (a, astro[200:200 + h, 202:202 + w]),
        "noise": (a, np.clip(a.astype(np.int16) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)),
        "brighter": (a, np.clip(a.astype(np.int16) + 30, 0, 255).astype(np.uint8)),
        "unrelated": (a, coffee[100:100 + h, 300:300 + w]),
        "odd_size": (cat[50:87, 60:111], cat[52:89, 61:112]),
    }
    out = {"skimage": skimage.__version__, "cases": []}
    for name, (x, y) in cases.items():
        out["cases"].append({
            "name": name, "width": int(x.shape[1]), "height": int(x.shape[0]),
            "a": x.flatten().tolist(), "b": y.flatten().tolist(),
            "ssim": float(structural_similarity(x, y, data_range=255)),
        })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out))
    print(f"wrote {OUT.relative_to(ROOT)}: {[(c['name'], round(c['ssim'], 4)) for c in out['cases']]}")


if __name__ == "__main__":
    main()
