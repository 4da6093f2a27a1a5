"""A plain-PyTorch mirror of crates/unireal-model/src/dit.rs (tiny preset) for recipe research.

Not a parity reference (scripts/reference/model.py is): it adds the research knobs that
train_mix.py switches (the "lookup" initialisation, x-prediction, a pooled-text vector).
"""
import math
import torch
import torch.nn.functional as F
from torch import nn
# ---------------- model (dit.rs)
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
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)


def heads(x, h):
    b, l, d = x.shape
    return x.view(b, l, h, d // h).transpose(1, 2)


def merge(x):
    b, h, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, h * d)


MASK = [None]
def attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=MASK[0])


class SA(nn.Module):
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
        h, m, hd = c["hidden"], int(c["hidden"] * 4), c["hidden"] // c["heads"]
        self.nh = c["heads"]
        self.img_mod, self.txt_mod = nn.Linear(h, 6 * h), nn.Linear(h, 6 * h)
        self.img_attn, self.txt_attn = SA(h, hd), SA(h, hd)
        self.img_mlp, self.txt_mlp = Mlp(h, m), Mlp(h, m)

    def qkv(self, a, x):
        q, k, v = a.qkv(x).chunk(3, -1)
        return a.query_norm(heads(q, self.nh)), a.key_norm(heads(k, self.nh)), heads(v, self.nh)

    def forward(self, img, txt, vec, cos, sin):
        im = self.img_mod(F.silu(vec)).chunk(6, -1)
        tm = self.txt_mod(F.silu(vec)).chunk(6, -1)
        iq, ik, iv = self.qkv(self.img_attn, modulate(layer_norm(img), im[0], im[1]))
        tq, tk, tv = self.qkv(self.txt_attn, modulate(layer_norm(txt), tm[0], tm[1]))
        q = rope_apply(torch.cat([tq, iq], 2), cos, sin)
        k = rope_apply(torch.cat([tk, ik], 2), cos, sin)
        a = merge(attention(q, k, torch.cat([tv, iv], 2)))
        lt = txt.shape[1]
        img = img + im[2][:, None] * self.img_attn.proj(a[:, lt:])
        img = img + im[5][:, None] * self.img_mlp(modulate(layer_norm(img), im[3], im[4]))
        txt = txt + tm[2][:, None] * self.txt_attn.proj(a[:, :lt])
        txt = txt + tm[5][:, None] * self.txt_mlp(modulate(layer_norm(txt), tm[3], tm[4]))
        return img, txt


class Single(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, m, hd = c["hidden"], int(c["hidden"] * 4), c["hidden"] // c["heads"]
        self.nh, self.h = c["heads"], h
        self.modulation = nn.Linear(h, 3 * h)
        self.linear1 = nn.Linear(h, 3 * h + m)
        self.linear2 = nn.Linear(h + m, h)
        self.query_norm, self.key_norm = RMS(hd), RMS(hd)

    def forward(self, x, vec, cos, sin):
        shift, scale, gate = self.modulation(F.silu(vec)).chunk(3, -1)
        h1 = self.linear1(modulate(layer_norm(x), shift, scale))
        h = self.h
        q = self.query_norm(heads(h1[..., :h], self.nh))
        k = self.key_norm(heads(h1[..., h:2 * h], self.nh))
        v = heads(h1[..., 2 * h:3 * h], self.nh)
        a = merge(attention(rope_apply(q, cos, sin), rope_apply(k, cos, sin), v))
        return x + gate[:, None] * self.linear2(torch.cat([a, F.gelu(h1[..., 3 * h:], approximate="tanh")], -1))


class DiT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h, pd = c["hidden"], c["in_channels"] * 4
        self.img_in, self.txt_in = nn.Linear(pd, h), nn.Linear(c["text_dim"], h)
        self.time_in = nn.Sequential(nn.Linear(256, h), nn.SiLU(), nn.Linear(h, h))
        self.index_embed, self.role_embed = nn.Embedding(8, h), nn.Embedding(4, h)
        self.double_blocks = nn.ModuleList([Double(c) for _ in range(2)])
        self.single_blocks = nn.ModuleList([Single(c) for _ in range(2)])
        self.fmod, self.flin = nn.Linear(h, 2 * h), nn.Linear(h, pd)
        self.text = nn.Parameter(torch.randn(16, c["text_dim"]))

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

    def forward(self, inputs, outputs, t, roles=None, text=None, keep=None):
        p = 2
        b, m, ch, hh, ww = outputs.shape
        n = 0 if inputs is None else inputs.shape[1]
        rows, cols = hh // p, ww // p
        frames = outputs if n == 0 else torch.cat([inputs, outputs], 1)
        tok = frames.reshape(b * (n + m), ch, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, ch * p * p)
        idx = torch.tensor(list(range(n)) + list(range(m)))[None].expand(b, -1)
        rl = torch.full((b, m), 3) if n == 0 else torch.cat([roles if roles is not None else torch.full((b, n), 1), torch.full((b, m), 3)], 1)
        fe = (self.index_embed(idx) + self.role_embed(rl)).repeat_interleave(rows * cols, 1)
        img = self.img_in(tok) + fe
        txt = self.txt_in(self.text[None].expand(b, -1, -1) if text is None else text)
        half = 128
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        a = (t * 1000.0)[:, None] * freqs[None]
        vec = self.time_in(torch.cat([a.cos(), a.sin()], -1))
        if getattr(self, "vector_in", None) is not None and text is not None:
            k = keep.float()[:, :, None]
            pooled = (text * k).sum(1) / k.sum(1).clamp_min(1)
            vec = vec + self.vector_in(pooled)
        lt = txt.shape[1]
        cos, sin = self.rope(lt, n + m, rows, cols)
        total = cos.shape[0]
        MASK[0] = None if keep is None else torch.cat([keep, torch.ones(b, total - lt, dtype=torch.bool)], 1)[:, None, None, :]
        for blk in self.double_blocks:
            img, txt = blk(img, txt, vec, cos, sin)
        x = torch.cat([txt, img], 1)
        for blk in self.single_blocks:
            x = blk(x, vec, cos, sin)
        out = x[:, total - m * rows * cols:]
        shift, scale = self.fmod(F.silu(vec)).chunk(2, -1)
        out = self.flin(modulate(layer_norm(out), shift, scale))
        return out.reshape(b * m, rows, cols, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, m, ch, hh, ww)


