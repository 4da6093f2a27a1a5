#!/usr/bin/env python3
"""Reference fixtures for DINO's vision transformers (issue 16), for
crates/unireal-model/tests/parity.rs. CPU only, seconds.

Run from the repository root:
    .venv/bin/pip install torch transformers safetensors pillow
    .venv/bin/python scripts/reference/dino.py

Writes crates/unireal-model/tests/fixtures/:
  dino/          a tiny random transformers.ViTModel without pooler (DINO v1's layout, as
                 facebook/dino-vits16 ships it), saved by save_pretrained, with a
                 ViTImageProcessor preprocessor_config.json (32x32 bilinear, no crop)
  dinov2/        a tiny random transformers.Dinov2Model (LayerScale, mask token, position
                 embeddings trained at 40 px = a 5x5 grid), with a BitImageProcessor
                 preprocessor_config.json (shortest edge 36 bicubic, crop 32: a 4x4 grid, so
                 the position embeddings are interpolated)
  dino_io.safetensors
                 for datasets/samples/images/chelsea.png and coffee.png, each processor's
                 pixel_values (`dino_pixels`, `dinov2_pixels`) and each model's
                 last_hidden_state (`dino_hidden`, `dinov2_hidden`); random pixels [1, 3, 32, 48]
                 (`rect_pixels`) and DINOv2's last_hidden_state on them (`rect_hidden`, a 4x6 grid)
"""
import shutil
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/unireal-model/tests/fixtures"
SAMPLES = ROOT / "datasets/samples/images"
IMAGES = ["chelsea.png", "coffee.png"]


def randomize(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():  # larger weights than HF's init so every term matters
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def main():
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model, ViTConfig, ViTImageProcessorPil, ViTModel

    images = [Image.open(SAMPLES / n).convert("RGB") for n in IMAGES]
    io = {}

    dest = OUT / "dino"
    shutil.rmtree(dest, ignore_errors=True)
    cfg = ViTConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8)
    dino = randomize(ViTModel(cfg, add_pooling_layer=False), 0)
    dino.save_pretrained(dest, safe_serialization=True)
    proc = ViTImageProcessorPil(size={"height": 32, "width": 32})
    proc.save_pretrained(dest)
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        io["dino_pixels"] = pixels
        io["dino_hidden"] = dino(pixel_values=pixels).last_hidden_state

    dest = OUT / "dinov2"
    shutil.rmtree(dest, ignore_errors=True)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=4,
                       image_size=40, patch_size=8)
    dinov2 = randomize(Dinov2Model(cfg), 1)
    dinov2.save_pretrained(dest, safe_serialization=True)
    proc = BitImageProcessorPil(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(dest)
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    torch.manual_seed(2)
    rect = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        io["dinov2_pixels"] = pixels
        io["dinov2_hidden"] = dinov2(pixel_values=pixels).last_hidden_state
        io["rect_pixels"] = rect
        io["rect_hidden"] = dinov2(pixel_values=rect).last_hidden_state

    save_file({k: v.contiguous() for k, v in io.items()}, OUT / "dino_io.safetensors")
    print(f"wrote dino/, dinov2/ and dino_io.safetensors under {OUT}")


if __name__ == "__main__":
    main()
