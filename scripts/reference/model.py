#!/usr/bin/env python3
"""PyTorch reference fixtures for crates/unireal-model/tests/parity.rs (CPU only, seconds).

Run from the repository root:
    .venv/bin/pip install torch transformers diffusers safetensors tokenizers pillow
    .venv/bin/python scripts/reference/model.py

Writes crates/unireal-model/tests/fixtures/:
  tokenizer.json          a small SentencePiece-style unigram tokenizer (T5's layout: <pad>=0,
                          </s>=1, <unk>=2, "</s>" appended), trained on the sample captions
  t5/model.safetensors    transformers.T5EncoderModel, tiny random v1.1 config, HF names
  t5/config.json
  t5/tokenizer.json       a copy of tokenizer.json, so t5/ is a whole T5 directory
                          (configs/train/tiny-t5-vae.yaml trains with it)
  t5_io.safetensors       prompts tokenised by tokenizer.json, attention mask, last_hidden_state
  vae/diffusion_pytorch_model.safetensors, vae/config.json
                          diffusers.AutoencoderKL, tiny random config
  vae_io.safetensors      an image cut from a sample photograph, the posterior mean, the scaled
                          latent, and the decode of a latent
  dit.safetensors         a tiny DiT written below in plain PyTorch from the same equations as
                          crates/unireal-model/src/dit.rs (Flux's double/single stream blocks,
                          3-axis RoPE, index + role embeddings), PyTorch layout
  dit_io.safetensors      its inputs and outputs for image editing (1 input + 1 output frame,
                          padded text) and text-to-image (0 inputs)
  dit_config.json         the DiT hyper-parameters
"""
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "crates/unireal-model/tests/fixtures"

CAPTIONS = [
    "Turn IMG1 into RES1: pan the camera to the left and zoom in on the cyclist.",
    "Make the sky darker and add a red car on the right.",
    "realistic, dynamic scene, with camera motion",
    "a photograph of an astronaut holding a flag on the moon",
    "a cat sitting on a wooden floor next to a cup of coffee",
    "Remove the person in the background and brighten the image.",
    "tilt the camera up to show the mountains",
]


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(CAPTIONS * 4, trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    assert tok.token_to_id("<pad>") == 0 and eos == 1
    tok.save(str(OUT / "tokenizer.json"))
    return tok


def t5(tok):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        vocab_size=tok.get_vocab_size(),
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        is_gated_act=True,
    )
    model = T5EncoderModel(cfg).eval()
    with torch.no_grad():  # larger weights than HF's init so every term matters
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.save_pretrained(OUT / "t5", safe_serialization=True)
    tok.save(str(OUT / "t5" / "tokenizer.json"))
    prompts = [CAPTIONS[0], CAPTIONS[6]]
    enc = [tok.encode(p).ids for p in prompts]
    n = max(len(e) for e in enc)
    ids = torch.tensor([e + [0] * (n - len(e)) for e in enc], dtype=torch.int64)
    mask = torch.tensor([[1] * len(e) + [0] * (n - len(e)) for e in enc], dtype=torch.int64)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    save_file({"ids": ids, "mask": mask, "out": out.contiguous()}, OUT / "t5_io.safetensors")


def tiny_vae(**config):
    """A tiny random diffusers.AutoencoderKL (3 levels, 4 latent channels, 4x down) with weights
    large enough that every term matters; `config` adds to or overrides its arguments
    (scripts/reference/pretrained.py makes Flux's from it)."""
    from diffusers import AutoencoderKL

    args = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
    )
    model = AutoencoderKL(**{**args, **config}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
            else:
                p.normal_(0.0, 0.15)
    return model


def vae():
    model = tiny_vae(scaling_factor=0.5, shift_factor=0.1)
    model.save_pretrained(OUT / "vae", safe_serialization=True)
    img = Image.open(ROOT / "datasets/samples/images/astronaut.png").convert("RGB").resize((16, 16), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        mean = model.encode(x).latent_dist.mean
        z = (mean - 0.1) * 0.5
        dec = model.decode(z / 0.5 + 0.1).sample
    save_file({"image": x.contiguous(), "mean": mean, "z": z, "decoded": dec}, OUT / "vae_io.safetensors")


# ----------------------------------------------------------------- the DiT, plain PyTorch

DIT = dict(in_channels=4, hidden=32, heads=2, double_blocks=1, single_blocks=1, text_dim=24, mlp_ratio=4.0,
           patch=2, max_frames=8, axes_dim=[4, 6, 6], rope_theta=10000.0, time_factor=1000.0, time_freq_dim=32,
           vec_in_dim=None, guidance_embed=False, outputs_at_origin=False)


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class RMS(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def rope_apply(x, cos, sin):
    x0, x1 = x[..., 0::2], x[..., 1::2]
    r0 = x0 * cos - x1 * sin
    r1 = x0 * sin + x1 * cos
    return torch.stack([r0, r1], -1).flatten(-2)


def heads(x, h):
    b, l, d = x.shape
    return x.view(b, l, h, d // h).transpose(1, 2)


def merge(x):
    b, h, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, h * d)


def attention(q, k, v, mask):
    # mask: True = hidden key
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    return s.softmax(-1) @ v


class StreamAttention(nn.Module):
    def __init__(self, h, hd):
        super().__init__()
        self.qkv = nn.Linear(h, 3 * h)
        self.query_norm = RMS(hd)
        self.key_norm = RMS(hd)
        self.proj = nn.Linear(h, h)


class Mlp(nn.Module):
    def __init__(self, h, m):
        super().__init__()
        self.fc1 = nn.Linear(h, m)
        self.fc2 = nn.Linear(m, h)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Double(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, m, hd = c["hidden"], int(c["hidden"] * c["mlp_ratio"]), c["hidden"] // c["heads"]
        self.nh = c["heads"]
        self.img_mod, self.txt_mod = nn.Linear(h, 6 * h), nn.Linear(h, 6 * h)
        self.img_attn, self.txt_attn = StreamAttention(h, hd), StreamAttention(h, hd)
        self.img_mlp, self.txt_mlp = Mlp(h, m), Mlp(h, m)

    def qkv(self, a, x):
        q, k, v = a.qkv(x).chunk(3, -1)
        return a.query_norm(heads(q, self.nh)), a.key_norm(heads(k, self.nh)), heads(v, self.nh)

    def forward(self, img, txt, vec, cos, sin, mask):
        im = self.img_mod(F.silu(vec)).chunk(6, -1)
        tm = self.txt_mod(F.silu(vec)).chunk(6, -1)
        iq, ik, iv = self.qkv(self.img_attn, modulate(layer_norm(img), im[0], im[1]))
        tq, tk, tv = self.qkv(self.txt_attn, modulate(layer_norm(txt), tm[0], tm[1]))
        q = rope_apply(torch.cat([tq, iq], 2), cos, sin)
        k = rope_apply(torch.cat([tk, ik], 2), cos, sin)
        a = merge(attention(q, k, torch.cat([tv, iv], 2), mask))
        lt = txt.shape[1]
        img = img + im[2][:, None] * self.img_attn.proj(a[:, lt:])
        img = img + im[5][:, None] * self.img_mlp(modulate(layer_norm(img), im[3], im[4]))
        txt = txt + tm[2][:, None] * self.txt_attn.proj(a[:, :lt])
        txt = txt + tm[5][:, None] * self.txt_mlp(modulate(layer_norm(txt), tm[3], tm[4]))
        return img, txt


class Single(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, m, hd = c["hidden"], int(c["hidden"] * c["mlp_ratio"]), c["hidden"] // c["heads"]
        self.nh, self.h = c["heads"], h
        self.modulation = nn.Linear(h, 3 * h)
        self.linear1 = nn.Linear(h, 3 * h + m)
        self.linear2 = nn.Linear(h + m, h)
        self.query_norm, self.key_norm = RMS(hd), RMS(hd)

    def forward(self, x, vec, cos, sin, mask):
        shift, scale, gate = self.modulation(F.silu(vec)).chunk(3, -1)
        h1 = self.linear1(modulate(layer_norm(x), shift, scale))
        h = self.h
        q = self.query_norm(heads(h1[..., :h], self.nh))
        k = self.key_norm(heads(h1[..., h:2 * h], self.nh))
        v = heads(h1[..., 2 * h:3 * h], self.nh)
        a = merge(attention(rope_apply(q, cos, sin), rope_apply(k, cos, sin), v, mask))
        return x + gate[:, None] * self.linear2(torch.cat([a, F.gelu(h1[..., 3 * h:], approximate="tanh")], -1))


class TimeIn(nn.Module):
    def __init__(self, f, h):
        super().__init__()
        self.in_layer, self.out_layer = nn.Linear(f, h), nn.Linear(h, h)

    def forward(self, x):
        return self.out_layer(F.silu(self.in_layer(x)))


class Last(nn.Module):
    def __init__(self, h, p):
        super().__init__()
        self.modulation, self.linear = nn.Linear(h, 2 * h), nn.Linear(h, p)


class DiT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h, pd = c["hidden"], c["in_channels"] * c["patch"] ** 2
        self.img_in, self.txt_in = nn.Linear(pd, h), nn.Linear(c["text_dim"], h)
        self.time_in = TimeIn(c["time_freq_dim"], h)
        self.index_embed, self.role_embed = nn.Embedding(c["max_frames"], h), nn.Embedding(4, h)
        self.double_blocks = nn.ModuleList([Double(c) for _ in range(c["double_blocks"])])
        self.single_blocks = nn.ModuleList([Single(c) for _ in range(c["single_blocks"])])
        self.final_layer = Last(h, pd)

    def rope(self, lt, frames, rows, cols):
        pos = [[0.0, 0.0, 0.0]] * lt
        pos += [[f + 1.0, r, q] for f in range(frames) for r in range(rows) for q in range(cols)]
        pos = torch.tensor(pos, dtype=torch.float64)
        parts = []
        for a, d in enumerate(self.c["axes_dim"]):
            freq = self.c["rope_theta"] ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            parts.append(pos[:, a:a + 1] * freq[None])
        ang = torch.cat(parts, -1)
        return ang.cos().float(), ang.sin().float()

    def forward(self, inputs, roles, outputs, t, text, text_pad):
        c, p = self.c, self.c["patch"]
        b, m, ch, hh, ww = outputs.shape
        n = 0 if inputs is None else inputs.shape[1]
        rows, cols = hh // p, ww // p
        frames = outputs if n == 0 else torch.cat([inputs, outputs], 1)
        tok = frames.reshape(b * (n + m), ch, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, ch * p * p)
        idx = torch.tensor(list(range(n)) + list(range(m)))[None].expand(b, -1)
        rl = torch.full((b, m), 3) if n == 0 else torch.cat([roles, torch.full((b, m), 3)], 1)
        fe = (self.index_embed(idx) + self.role_embed(rl)).repeat_interleave(rows * cols, 1)
        img = self.img_in(tok) + fe
        txt = self.txt_in(text)
        half = c["time_freq_dim"] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = (t * c["time_factor"])[:, None] * freqs[None]
        vec = self.time_in(torch.cat([args.cos(), args.sin()], -1))
        lt = txt.shape[1]
        cos, sin = self.rope(lt, n + m, rows, cols)
        total = cos.shape[0]
        mask = None
        if text_pad is not None:
            keys = torch.cat([text_pad, torch.zeros(b, total - lt, dtype=torch.bool)], 1)
            mask = keys[:, None, None, :].expand(b, c["heads"], total, total)
        for blk in self.double_blocks:
            img, txt = blk(img, txt, vec, cos, sin, mask)
        x = torch.cat([txt, img], 1)
        for blk in self.single_blocks:
            x = blk(x, vec, cos, sin, mask)
        out = x[:, total - m * rows * cols:]
        shift, scale = self.final_layer.modulation(F.silu(vec)).chunk(2, -1)
        out = self.final_layer.linear(modulate(layer_norm(out), shift, scale))
        return out.reshape(b * m, rows, cols, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, m, ch, hh, ww)


def dit():
    torch.manual_seed(0)
    model = DiT(DIT).eval()
    with torch.no_grad():  # nothing zero-initialised: every path must match
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.normal_(1.0, 0.2)
            else:
                p.normal_(0.0, 0.2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / "dit.safetensors")
    (OUT / "dit_config.json").write_text(json.dumps(DIT, indent=1) + "\n")
    g = torch.Generator().manual_seed(1)
    b, c = 2, DIT["in_channels"]
    inputs = torch.randn(b, 1, c, 8, 8, generator=g)
    roles = torch.tensor([[1], [0]])
    outputs = torch.randn(b, 1, c, 8, 8, generator=g)
    t = torch.tensor([0.3, 0.85])
    text = torch.randn(b, 5, DIT["text_dim"], generator=g)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    with torch.no_grad():
        edit = model(inputs, roles, outputs, t, text, pad)
        t2i = model(None, None, outputs, t, text, None)
    save_file(
        {"inputs": inputs, "roles": roles, "outputs": outputs, "t": t, "text": text, "pad": pad.to(torch.uint8),
         "edit": edit.contiguous(), "t2i": t2i.contiguous()},
        OUT / "dit_io.safetensors",
    )


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tok = tokenizer()
    t5(tok)
    vae()
    dit()
    for f in sorted(OUT.rglob("*")):
        if f.is_file():
            print(f"{f.relative_to(ROOT)}  {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
