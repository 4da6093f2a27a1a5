#!/usr/bin/env python3
"""An example adapter for `objects.segmenter: {kind: command}` (protocol: docs/segmenters.md).

    objects:
      segmenter:
        kind: command
        command: [.venv/bin/python, scripts/segmenters/example_adapter.py]
    control:
      external: [depth]

It speaks the whole protocol and runs as is (numpy + Pillow), but its "model" is a toy: the
most salient colour blob of each frame (pixels far from the frame's median colour), tracked
from frame to frame by overlap, and a luminance "depth" map. To use a real model, replace
`segment_frames` (e.g. Grounded-SAM 2: ground phrases on frame 0 with Grounding DINO, then
propagate the boxes with SAM 2's video predictor, as the UniReal authors did) and
`condition_map` (e.g. Depth Anything). Load the model once, at start-up: the build keeps this
process alive across videos.

Rules: one JSON answer line per request line, with the request's "id", flushed; logs go to
stderr; an answer {"id": ..., "error": "..."} reports a failure of that request only.
"""
import json
import os
import sys

import numpy as np
from PIL import Image


def log(*args):
    print("example_adapter:", *args, file=sys.stderr, flush=True)


def salient_mask(rgb):
    """A toy segmenter: the largest blob of pixels far from the frame's median colour."""
    img = rgb.astype(np.int16)
    med = np.median(img.reshape(-1, 3), axis=0)
    dist = np.abs(img - med).max(axis=-1)
    m = dist > max(60, np.percentile(dist, 90))
    if m.sum() == 0:
        return None
    # Keep the bounding box of the strongest rows/columns as a crude blob.
    ys, xs = np.nonzero(m)
    y0, y1 = np.percentile(ys, [10, 90]).astype(int)
    x0, x1 = np.percentile(xs, [10, 90]).astype(int)
    blob = np.zeros_like(m)
    blob[y0 : y1 + 1, x0 : x1 + 1] = True
    return blob & m


def segment_frames(frames):
    """Replace with a real model. `frames`: list of HxWx3 uint8 arrays of one shot.

    Returns a list of tracks: {"phrase": str or None, "masks": [bool HxW array or None per frame]}.
    """
    masks = [salient_mask(f) for f in frames]
    if masks[0] is None:
        return []
    track = {"phrase": None, "masks": [masks[0]]}
    for m in masks[1:]:
        overlap = m is not None and (m & masks[0]).sum() > 0.2 * min(m.sum(), masks[0].sum())
        track["masks"].append(m if overlap else None)
    return [track]


def condition_map(kind, rgb):
    """Replace with a real model (depth, pose, ...). Returns an HxW uint8 array."""
    if kind != "depth":
        raise ValueError(f"no {kind} model in this adapter")
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.uint8)


def answer(req):
    if req["op"] == "segment":
        frames = [np.asarray(Image.open(f["path"]).convert("RGB")) for f in req["frames"]]
        objects = []
        for t, track in enumerate(segment_frames(frames)):
            paths = []
            for k, m in enumerate(track["masks"]):
                if m is None:
                    paths.append(None)
                    continue
                p = os.path.join(req["out_dir"], f"obj{t}_f{k}.png")
                Image.fromarray((m * 255).astype(np.uint8)).save(p)
                paths.append(p)
            objects.append({"phrase": track["phrase"], "masks": paths})
        return {"id": req["id"], "objects": objects}
    if req["op"] == "condition":
        rgb = np.asarray(Image.open(req["frame"]["path"]).convert("RGB"))
        Image.fromarray(condition_map(req["kind"], rgb)).save(req["out"])
        return {"id": req["id"], "map": req["out"]}
    return {"id": req["id"], "error": f"unknown op {req['op']!r}"}


def main():
    log("ready")
    for line in sys.stdin:
        req = json.loads(line)
        try:
            out = answer(req)
        except Exception as e:  # a failure of this request only
            out = {"id": req.get("id"), "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
