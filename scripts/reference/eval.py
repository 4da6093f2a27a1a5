#!/usr/bin/env python3
"""Reference scores for unireal-eval (issue 16), for crates/unireal-eval/tests/eval.rs. CPU
only, seconds. Each metric is computed as the benchmark's scripts compute it, with the tiny
random CLIP and DINO of crates/unireal-model/tests/fixtures (scripts/reference/pretrained.py,
scripts/reference/dino.py) standing in for the published models:

- CLIP image/text embeddings: CLIPModel.get_image_features / get_text_features, L2-normalised;
  images through clip.load's transform (torchvision's Resize + CenterCrop, written out below
  with PIL) at the directory's sizes and statistics, prompts padded to 77 tokens.
- DINO: torchvision's Resize(int(s*8/7), BICUBIC) + CenterCrop(s) + ImageNet normalisation on a
  PIL image (written out below with PIL, as torchvision does it on PIL images), the class token
  of ViTModel's last_hidden_state (MagicBrush's evaluation/image_eval.py, Kosmos-G's DreamBench
  scorer).
- L1 / L2: the generated image resized to the reference's size (PIL's default, bicubic), both
  /255, mean of |a-b| and (a-b)^2 over pixels and channels (MagicBrush's eval_distance).
- CLIP_dir: cosine of (output image - input image) and (output caption - input caption)
  embeddings (InstructPix2Pix's metrics/clip_similarity.py); CLIP_im, CLIP_out, DINO, CLIP-I,
  CLIP-T: cosines; DreamBench's CLIP-I / DINO: mean over the subject's reference images.

Run from the repository root:
    .venv/bin/pip install torch transformers safetensors pillow
    .venv/bin/python scripts/reference/eval.py

Writes crates/unireal-eval/tests/fixtures/:
  images/*.png   small crops of datasets/samples/images (the rows' inputs, targets, references
                 and generated outputs)
  cases.json     per protocol, the test rows (image files, captions, DreamBench's template and
                 class) and the scores computed here; `pixels`: the CLIP and DINO transforms'
                 output for an image whose crop margin is odd
"""
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "crates/unireal-model/tests/fixtures"
OUT = ROOT / "crates/unireal-eval/tests/fixtures"
SAMPLES = ROOT / "datasets/samples/images"

# name: (sample image, crop box, size) — crops of different sizes and aspect ratios.
IMAGES = {
    "cat": ("chelsea.png", (0, 0, 451, 300), (64, 43)),
    "cat_small": ("chelsea.png", (100, 50, 400, 300), (45, 37)),
    "coffee": ("coffee.png", (0, 0, 600, 400), (60, 40)),
    "astronaut": ("astronaut.png", (0, 0, 512, 512), (48, 48)),
    "astronaut_face": ("astronaut.png", (150, 50, 350, 250), (40, 40)),
    "horse": ("horse.png", None, (56, 41)),
}

CASES = {
    "emu-edit": [
        dict(name="cat_to_coffee", input="cat", output="coffee",
             input_caption="a cat lying on a bed", output_caption="a cup of coffee on a table"),
        dict(name="unchanged", input="astronaut", output="astronaut",
             input_caption="an astronaut in a white suit", output_caption="an astronaut holding a flag"),
        dict(name="swapped", input="cat", output="coffee",
             input_caption="a cup of coffee on a table", output_caption="a cat lying on a bed"),
        dict(name="no_captions", input="horse", output="cat_small"),
    ],
    "magicbrush": [
        dict(name="edit_with_captions", input="cat", target="cat_small", output="coffee",
             input_caption="a cat lying on a bed", output_caption="a small cat"),
        dict(name="edit_without_captions", input="astronaut", target="astronaut_face", output="horse"),
    ],
    "dreambench": [
        dict(name="cat_jungle", references=["cat", "cat_small"], output="coffee",
             template="a {0} {1} in the jungle", cls="cat"),
        dict(name="astronaut_snow", references=["astronaut", "astronaut_face", "horse"], output="astronaut",
             template="a {0} {1} in the snow", cls="toy"),
    ],
}

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def make_images():
    d = OUT / "images"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name, (src, box, size) in IMAGES.items():
        img = Image.open(SAMPLES / src).convert("RGB")
        if box:
            img = img.crop(box)
        img.resize(size, Image.BICUBIC).save(d / f"{name}.png")


def load(name):
    return Image.open(OUT / "images" / f"{name}.png").convert("RGB")


def torchvision_eval(img, short, crop, mean, std):
    """torchvision's Resize(short, BICUBIC) + CenterCrop(crop) + ToTensor + Normalize on a PIL
    image, written out with PIL as torchvision computes it (the long side truncated, the crop
    offset int(round(margin / 2))): clip.load's transform and DINO's evaluation transform."""
    w, h = img.size
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize(new, Image.BICUBIC)
    w, h = img.size
    top = int(round((h - crop) / 2.0))
    left = int(round((w - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def distances(gen, ref):
    gen = gen.resize(ref.size, Image.BICUBIC) if gen.size != ref.size else gen
    a = np.asarray(gen, dtype=np.float64) / 255.0
    b = np.asarray(ref, dtype=np.float64) / 255.0
    return float(np.mean(np.abs(a - b))), float(np.mean((a - b) ** 2))


def main():
    from transformers import CLIPModel, CLIPTokenizerFast, ViTModel

    make_images()
    clip = CLIPModel.from_pretrained(MODELS / "clip").eval()
    proc = json.loads((MODELS / "clip/preprocessor_config.json").read_text())
    clip_px = lambda img: torchvision_eval(  # noqa: E731
        img, proc["size"]["shortest_edge"], proc["crop_size"]["height"], proc["image_mean"], proc["image_std"])
    tok = CLIPTokenizerFast.from_pretrained(MODELS / "clip")
    dino = ViTModel.from_pretrained(MODELS / "dino", add_pooling_layer=False).eval()
    size = dino.config.image_size
    dino_px = lambda img: torchvision_eval(img, size * 8 // 7, size, IMAGENET_MEAN, IMAGENET_STD)  # noqa: E731
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    # torch's cosine_similarity: 0 for a zero vector (an unchanged image's CLIP_dir).
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, dim=0))  # noqa: E731

    @torch.no_grad()
    def clip_image(name):
        out = clip.get_image_features(pixel_values=clip_px(load(name))[None])
        out = out.pooler_output if hasattr(out, "pooler_output") else out
        return unit(out[0])

    @torch.no_grad()
    def clip_text(text):
        t = tok([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        out = clip.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
        out = out.pooler_output if hasattr(out, "pooler_output") else out
        return unit(out[0])

    @torch.no_grad()
    def dino_image(name):
        return unit(dino(pixel_values=dino_px(load(name))[None]).last_hidden_state[0, 0])

    for protocol, cases in CASES.items():
        for c in cases:
            e = {}
            g_clip, g_dino = clip_image(c["output"]), dino_image(c["output"])
            if protocol in ("emu-edit", "magicbrush"):
                i_clip = clip_image(c["input"])
                e["clip_im"] = cos(g_clip, i_clip)
                e["dino"] = cos(g_dino, dino_image(c["input"]))
                e["l1"] = distances(load(c["output"]), load(c["input"]))[0]
                if "output_caption" in c:
                    t_out = clip_text(c["output_caption"])
                    e["clip_out"] = cos(g_clip, t_out)
                    t_in = clip_text(c["input_caption"])
                    e["clip_dir"] = cos(g_clip - i_clip, t_out - t_in)
                if protocol == "magicbrush":
                    e["gt_l1"], e["gt_l2"] = distances(load(c["output"]), load(c["target"]))
                    e["gt_clip_i"] = cos(g_clip, clip_image(c["target"]))
                    e["gt_dino"] = cos(g_dino, dino_image(c["target"]))
                    if "output_caption" in c:
                        e["gt_clip_t"] = cos(g_clip, clip_text(c["output_caption"]))
            else:
                e["clip_i"] = float(np.mean([cos(g_clip, clip_image(r)) for r in c["references"]]))
                e["dino"] = float(np.mean([cos(g_dino, dino_image(r)) for r in c["references"]]))
                prompt = c["template"].replace("{0} ", "").replace("{1}", c["cls"])
                c["prompt"] = prompt
                e["clip_t"] = cos(g_clip, clip_text(prompt))
            c["expected"] = e
    # Both transforms' pixels for images whose crop margin is odd (the offset is rounded).
    CASES["pixels"] = {
        "clip": {"image": "coffee", "values": clip_px(load("coffee")).flatten().tolist()},
        "dino": {"image": "cat_small", "values": dino_px(load("cat_small")).flatten().tolist()},
    }
    (OUT / "cases.json").write_text(json.dumps(CASES, indent=1) + "\n")
    print(f"wrote images/ and cases.json under {OUT}")


if __name__ == "__main__":
    main()
