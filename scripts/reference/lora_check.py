#!/usr/bin/env python3
"""diffusers' side of the LoRA round trip (crates/unireal-train/tests/train.rs runs it when the
venv has torch, diffusers and peft; by hand it checks any LoRA run):

    .venv/bin/python scripts/reference/lora_check.py --pipeline FLUX_DIR --lora RUN/checkpoints/step-N/lora.safetensors \
        --noise NOISE.safetensors --prompt "…" --width 48 --height 32 --steps 4 --out latents.safetensors

Loads the FluxPipeline at FLUX_DIR in f32, applies the LoRA with `load_lora_weights` (or, with
--transformer DIR, swaps in that FluxTransformer2DModel, e.g. a `unireal-train merge` output),
samples the prompt from the tensor `noise` of NOISE (unpacked [1, C, H/8, W/8], as
`unireal-infer --init-noise` reads it) with guidance_scale --guidance, and writes the final
latents unpacked as `latents` to OUT: the layout of `unireal-infer --out-latents`.
"""
import argparse

import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from safetensors.torch import load_file, save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--lora")
    ap.add_argument("--transformer")
    ap.add_argument("--noise", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--guidance", type=float, default=3.5)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    kwargs = {}
    if a.transformer:
        kwargs["transformer"] = FluxTransformer2DModel.from_pretrained(a.transformer, torch_dtype=torch.float32)
    pipe = FluxPipeline.from_pretrained(a.pipeline, torch_dtype=torch.float32, **kwargs)
    if a.lora:
        pipe.load_lora_weights(a.lora)
    noise = load_file(a.noise)["noise"]
    b, c, h, w = noise.shape
    packed = noise.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)
    with torch.no_grad():
        out = pipe(prompt=a.prompt, height=a.height, width=a.width, num_inference_steps=a.steps,
                   guidance_scale=a.guidance, latents=packed, output_type="latent").images
    latents = out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
    save_file({"latents": latents.contiguous()}, a.out)


if __name__ == "__main__":
    main()
