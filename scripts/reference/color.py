#!/usr/bin/env python3
"""Reference 8-bit colour conversions from OpenCV for crates/unireal-vision/tests/reference.rs.

Run from the repository root (needs numpy, opencv-python-headless; CPU only):
    .venv/bin/pip install numpy opencv-python-headless
    .venv/bin/python scripts/reference/color.py
Writes crates/unireal-vision/tests/fixtures/color.json: RGB triples (every corner and edge of the
cube on a coarse lattice, plus random colours) with cv2.cvtColor(..., COLOR_RGB2HSV) — the
conversion PySceneDetect's ContentDetector scores cuts with — and COLOR_RGB2GRAY.
"""
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/unireal-vision/tests/fixtures/color.json"


def main() -> None:
    rng = np.random.default_rng(0)
    lattice = np.array([0, 1, 2, 5, 17, 64, 127, 128, 200, 254, 255], dtype=np.uint8)
    grid = np.stack(np.meshgrid(lattice, lattice, lattice, indexing="ij"), -1).reshape(-1, 3)
    rand = rng.integers(0, 256, size=(3000, 3), dtype=np.uint8)
    rgb = np.concatenate([grid, rand]).reshape(1, -1, 3)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rows = [
        [int(x) for x in (*c, *h, g)]
        for c, h, g in zip(rgb[0], hsv[0], gray[0])
    ]
    OUT.write_text(json.dumps({"opencv": cv2.__version__, "columns": "r g b h s v gray", "rows": rows},
                              separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({len(rows)} colours, OpenCV {cv2.__version__})")


if __name__ == "__main__":
    main()
