#!/usr/bin/env python3
"""Reference fixtures for loading pretrained checkpoints (issue 15): sharded half-precision
safetensors and CLIP, for crates/unireal-model/tests/{weights,clip}.rs. CPU only, seconds.

Run from the repository root, after scripts/reference/model.py (it reads that script's T5):
    .venv/bin/pip install torch transformers diffusers safetensors tokenizers pillow
    .venv/bin/python scripts/reference/pretrained.py

Writes crates/unireal-model/tests/fixtures/:
  t5-sharded/             the fixture T5 (t5/) in bf16, saved by transformers' save_pretrained
                          in two shards: model-0000N-of-00002.safetensors + model.safetensors.index.json
                          (the layout T5-XXL and Flux's transformer/ ship in), config.json
  t5-sharded_io.safetensors
                          t5_io.safetensors' prompts through that bf16 model computed in f32
  clip/                   a tiny random transformers.CLIPModel (text + vision towers with their
                          projections, quick_gelu), saved by save_pretrained, with a CLIP
                          byte-level BPE tokenizer (tokenizer.json, trained on the captions) and
                          the CLIPImageProcessor's preprocessor_config.json (30 px)
  clip_io.safetensors     two prompts padded to 77 tokens as CLIPTokenizer pads them (ids,
                          mask), the text tower's last_hidden_state, pooled output and text
                          embeds; the processor's pixel_values for datasets/samples/images/
                          chelsea.png and coffee.png, the vision tower's last_hidden_state,
                          pooled output and image embeds
"""
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/unireal-model/tests/fixtures"
SAMPLES = ROOT / "datasets/samples/images"

PROMPTS = ["a photograph of an astronaut holding a flag on the moon", "a cat on a wooden floor"]


def t5_sharded():
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(OUT / "t5").to(torch.bfloat16).eval()
    dest = OUT / "t5-sharded"
    shutil.rmtree(dest, ignore_errors=True)
    size = sum(p.numel() * 2 for p in model.parameters())
    # Just over half the bytes: transformers writes exactly two shards.
    model.save_pretrained(dest, safe_serialization=True, max_shard_size=f"{size * 6 // 10 // 1000}KB")
    shards = sorted(p.name for p in dest.glob("model-*.safetensors"))
    assert len(shards) == 2, shards
    assert (dest / "model.safetensors.index.json").is_file()
    io = load_file(OUT / "t5_io.safetensors")
    with torch.no_grad():
        out = model.float()(input_ids=io["ids"], attention_mask=io["mask"]).last_hidden_state
    save_file({"out": out.contiguous()}, OUT / "t5-sharded_io.safetensors")


def clip_tokenizer(dest):
    """CLIP's tokenizer pipeline (lower-cased, byte-level BPE with `</w>` word ends,
    <|startoftext|> … <|endoftext|>) over a vocabulary trained on the prompts, written by
    transformers' CLIPTokenizer so tokenizer.json is the real layout."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    alphabet = sorted(set("".join(PROMPTS + ["the of and a in"]).lower()) - {" "})
    trainer = trainers.BpeTrainer(
        vocab_size=200, end_of_word_suffix="</w>", initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator([p.lower() for p in PROMPTS] * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    # CLIP's vocabulary holds every byte-level character, alone and as a word end.
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    for ch in bytes_to_unicode().values():
        for t in (ch, ch + "</w>"):
            vocab.setdefault(t, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    clip_tok = CLIPTokenizer(vocab=vocab, merges=merges)
    clip_tok.save_pretrained(dest)
    assert (dest / "tokenizer.json").is_file()
    return clip_tok, len(vocab)


def clip():
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    dest = OUT / "clip"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tok, vocab = clip_tokenizer(dest)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=40,
            intermediate_size=56,
            num_hidden_layers=2,
            num_attention_heads=5,
            image_size=30,
            patch_size=6,
            hidden_act="quick_gelu",
        ),
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():  # larger weights than HF's init so every term matters
        for name, p in model.named_parameters():
            if name != "logit_scale":
                p.normal_(0.0, 0.2)
    model.save_pretrained(dest, safe_serialization=True)
    proc = CLIPImageProcessor(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30})
    proc.save_pretrained(dest)

    text = tok(PROMPTS, padding="max_length", max_length=77, return_tensors="pt")
    images = [Image.open(SAMPLES / n).convert("RGB") for n in ["chelsea.png", "coffee.png"]]
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        t = model.text_model(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
        v = model.vision_model(pixel_values=pixels)
        text_embeds = model.text_projection(t.pooler_output)
        image_embeds = model.visual_projection(v.pooler_output)
    save_file(
        {
            "ids": text["input_ids"].to(torch.int64).contiguous(),
            "mask": text["attention_mask"].to(torch.int64).contiguous(),
            "text_hidden": t.last_hidden_state.contiguous(),
            "text_pooled": t.pooler_output.contiguous(),
            "text_embeds": text_embeds.contiguous(),
            "pixel_values": pixels.contiguous(),
            "vision_hidden": v.last_hidden_state.contiguous(),
            "vision_pooled": v.pooler_output.contiguous(),
            "image_embeds": image_embeds.contiguous(),
        },
        OUT / "clip_io.safetensors",
    )


if __name__ == "__main__":
    t5_sharded()
    clip()
    print(f"wrote fixtures under {OUT}")
