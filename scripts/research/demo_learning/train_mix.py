"""Demo-like run on the real shards: all families mixed, aspect buckets, byte text encoder."""
import argparse, glob, io, json, math, random, time
import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
import dit_mod
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
from dit_mod import DiT

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=600)
p.add_argument("--lr", type=float, default=5e-4)
p.add_argument("--warmup", type=int, default=20)
p.add_argument("--bs", type=int, default=4)
p.add_argument("--res", type=int, default=80)
p.add_argument("--factor", type=int, default=4)
p.add_argument("--tsamp", default="ln")
p.add_argument("--init", default="lookup")
p.add_argument("--gain", type=float, default=4.0)
p.add_argument("--normscale", type=float, default=3.0)
p.add_argument("--hidden", type=int, default=192)
p.add_argument("--axes", default="8,20,20")
p.add_argument("--heads", type=int, default=4)
p.add_argument("--eval_every", type=int, default=100)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--pred", default="v")  # v | x (x-prediction, loss on v)
p.add_argument("--ema", type=float, default=0.99)
p.add_argument("--only", default="")
p.add_argument("--copy", type=int, default=0)
p.add_argument("--frame_gain", type=float, default=0.0)
p.add_argument("--vector", type=int, default=0)
p.add_argument("--tag", default="run")
p.add_argument("--shards", default=str(REPO / "out/shards/video"))
p.add_argument("--out", default=str(REPO / "out/research"))
args = p.parse_args()
Path(args.out).mkdir(parents=True, exist_ok=True)
torch.set_num_threads(args.threads)
torch.manual_seed(0)

rows = pq.read_table(sorted(glob.glob(f"{args.shards}/part-*.parquet"))[0]).to_pylist()
ALIGN = 2 * args.factor
ratios = [1.0, 4 / 3, 3 / 4, 16 / 9, 9 / 16]


def snap(x):
    return max(1, round(x / ALIGN)) * ALIGN


buckets = [(snap(math.sqrt(args.res ** 2 * a)), snap(math.sqrt(args.res ** 2 * a) / a)) for a in ratios]


def bucket_of(w, h):
    r = math.log(w / h)
    return min(buckets, key=lambda b: abs(r - math.log(b[0] / b[1])))


def load(b, bw, bh):
    im = Image.open(io.BytesIO(b)).convert("RGB")
    W, H = im.size
    s = max(bw / W, bh / H)
    sw, sh = max(bw, round(W * s)), max(bh, round(H * s))
    im = im.resize((sw, sh), Image.BILINEAR)
    l, t = (sw - bw) // 2, (sh - bh) // 2
    x = np.asarray(im.crop((l, t, l + bw, t + bh))).astype(np.float32) / 127.5 - 1
    return torch.tensor(x).permute(2, 0, 1)


ROLE = {"asset": 0, "canvas": 1, "control": 2}
data = []
for r in rows:
    out = [i for i in r["images"] if i["role"] == "output"][0]
    bw, bh = bucket_of(out["width"], out["height"])
    ins = [i for i in r["images"] if i["role"] != "output"]
    prompt = r["context_prompt"] + " " + r["base_prompt"]
    data.append(dict(task=r["task"], key=(len(ins), bw, bh), inputs=torch.stack([load(i["bytes"], bw, bh) for i in ins]),
                     roles=torch.tensor([ROLE[i["role"]] for i in ins]), output=load(out["bytes"], bw, bh)[None],
                     prompt=prompt.encode()[:127]))
data = [d for d in data if not args.only or d["task"] in args.only.split(",")]
if args.copy:
    for d in data: d["output"] = d["inputs"][:1].clone()
print("buckets", buckets, len(data), "rows")
f2f_rows = [d for d in data if d["task"] == "frame2frame"]
demo = next(d for d in data if d["task"] == "frame2frame")
print("demo", demo["key"], demo["prompt"])


class ByteText(nn.Module):
    def __init__(self, w=64):
        super().__init__()
        self.emb = nn.Embedding(259, w)
        layer = nn.TransformerEncoderLayer(w, 4, 2 * w, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2)

    def forward(self, prompts):
        L = max(len(p) for p in prompts) + 1
        ids = torch.zeros(len(prompts), L, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, :len(p)] = torch.tensor(list(p)) + 3
            ids[i, len(p)] = 1
        keep = ids != 0
        return self.enc(self.emb(ids), src_key_padding_mask=~keep), keep


def s2d(x, f):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4).reshape(b, c * f * f, h // f, w // f)


def d2s(x, f):
    b, cf, h, w = x.shape
    c = cf // (f * f)
    return x.reshape(b, c, f, f, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * f, w * f)


def s2d5(x):
    b, n = x.shape[:2]
    y = s2d(x.flatten(0, 1), args.factor)
    return y.reshape(b, n, *y.shape[1:])


f = args.factor
cfg = dict(in_channels=3 * f * f, hidden=args.hidden, heads=args.heads, text_dim=64,
           axes_dim=[int(x) for x in args.axes.split(",")], rope_theta=10000.0)
model = DiT(cfg)
text_enc = ByteText()
if args.vector:
    model.vector_in = nn.Sequential(nn.Linear(64, args.hidden), nn.SiLU(), nn.Linear(args.hidden, args.hidden))
with torch.no_grad():
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_uniform_(mod.weight)
            nn.init.zeros_(mod.bias)
        if isinstance(mod, nn.Embedding):
            nn.init.normal_(mod.weight, 0, 0.02)
    for name, mod in model.named_modules():
        if name.endswith("_mod") or name in ("fmod", "flin") or name.endswith("modulation"):
            nn.init.zeros_(mod.weight)
            nn.init.zeros_(mod.bias)
    if args.init == "lookup":
        hd = cfg["hidden"] // cfg["heads"]
        fa = cfg["axes_dim"][0]
        for blk in list(model.double_blocks) + list(model.single_blocks):
            lin = blk.img_attn.qkv if hasattr(blk, "img_attn") else blk.linear1
            h = cfg["hidden"]
            u = torch.zeros(cfg["heads"], hd)
            u[:, fa:] = 1.0
            u = u * args.gain
            uk = u.clone()
            u[:, 0] = args.frame_gain
            uk[:, 0] = args.frame_gain * math.cos(1.0)
            uk[:, 1] = args.frame_gain * math.sin(1.0)
            lin.bias[:h] += u.reshape(-1)
            lin.bias[h:2 * h] += uk.reshape(-1)
        for name, prm in model.named_parameters():
            if ("img_attn" in name or "single" in name) and (name.endswith("query_norm.scale") or name.endswith("key_norm.scale")):
                prm.fill_(args.normscale)

params = list(model.parameters()) + list(text_enc.parameters())
print(sum(p.numel() for p in params), "params", flush=True)
opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
import copy
ema_m, ema_t = copy.deepcopy(model), copy.deepcopy(text_enc)
rng = random.Random(0)
groups = {}
for d in data:
    groups.setdefault(d["key"], []).append(d)
pending = {}


def next_batch():
    while True:
        d = rng.choice(data)
        pending.setdefault(d["key"], []).append(d)
        if len(pending[d["key"]]) == args.bs:
            return pending.pop(d["key"])


def sample_t(b):
    if args.tsamp == "ln":
        return torch.sigmoid(torch.randn(b))
    if args.tsamp.startswith("ln:"):
        m, sd = map(float, args.tsamp[3:].split(","))
        return torch.sigmoid(m + sd * torch.randn(b))
    if args.tsamp == "unif":
        return torch.rand(b)
    if args.tsamp.startswith("shift"):
        s = float(args.tsamp[5:])
        t = torch.sigmoid(torch.randn(b))
        return s * t / (1 + (s - 1) * t)
    if args.tsamp == "ln+unif":
        return torch.where(torch.rand(b) < 0.5, torch.sigmoid(torch.randn(b)), torch.rand(b))
    raise ValueError


def velocity(m, te, xin, roles, xt, t, prompts):
    text, keep = te(prompts)
    out = m(xin, xt, t, roles, text, keep)
    if args.pred == "x":  # network predicts x0; v = (x_t - x0)/t
        return (xt - out) / t.clamp_min(0.05)[:, None, None, None, None]
    return out


def psnr(a, b):
    return -10 * math.log10(max(((a - b) / 2).pow(2).mean().item(), 1e-10))


def evaluate(step, tag):
    res = {}
    for name, (m, te) in {"raw": (model, text_enc), "ema": (ema_m, ema_t)}.items():
        m.eval()
        with torch.no_grad():
            xin, x0 = s2d5(demo["inputs"][None]), s2d5(demo["output"][None])
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
            x = noise
            ts = torch.linspace(1, 0, 29)
            for i in range(28):
                v = velocity(m, te, xin, demo["roles"][None], x, torch.full((1,), ts[i].item()), [demo["prompt"]])
                if i == 0:
                    est = d2s((x - v)[:, 0], f).clamp(-1, 1)
                x = x + (ts[i + 1] - ts[i]) * v
            smp = d2s(x[:, 0], f).clamp(-1, 1)
        m.train()
        tgt = demo["output"]
        mean_img = tgt.mean((2, 3), keepdim=True).expand_as(tgt)
        res[name] = dict(sample=round(psnr(smp, tgt), 2), est1=round(psnr(est, tgt), 2))
        if name == "ema":
            Image.fromarray(((torch.cat([demo["inputs"][0], smp[0], tgt[0]], 2).permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy()).save(f"{args.out}/demo_{tag}.png")
    ests, means = [], []
    with torch.no_grad():
        for d in f2f_rows:
            xin, x0 = s2d5(d["inputs"][None]), s2d5(d["output"][None])
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
            v = velocity(model, text_enc, xin, d["roles"][None], noise, torch.ones(1), [d["prompt"]])
            est = d2s((noise - v)[:, 0], f).clamp(-1, 1)
            tg = d["output"]
            ests.append(psnr(est, tg)); means.append(psnr(tg.mean((2, 3), keepdim=True).expand_as(tg), tg))
    res["f2f_est1_gain"] = round(sum(e - m for e, m in zip(ests, means)) / len(ests), 2)
    res["mean"] = round(psnr(mean_img, tgt), 2)
    res["copy"] = round(psnr(demo["inputs"][:1], tgt), 2)
    print(json.dumps(dict(step=step, **res)), flush=True)
    open(f"{args.out}/{tag}.jsonl", "a").write(json.dumps(dict(step=step, **res)) + "\n")


t0 = time.time()
for step in range(1, args.steps + 1):
    lr = args.lr * min(1.0, step / max(1, args.warmup))
    if step > args.warmup:
        lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - args.warmup) / (args.steps - args.warmup))))
    for gp in opt.param_groups:
        gp["lr"] = lr
    b = next_batch()
    xin = s2d5(torch.stack([d["inputs"] for d in b]))
    roles = torch.stack([d["roles"] for d in b])
    x0 = s2d5(torch.stack([d["output"] for d in b]))
    prompts = [d["prompt"] if rng.random() > 0.1 else b"" for d in b]
    t = sample_t(len(b))
    noise = torch.randn_like(x0)
    tt = t[:, None, None, None, None]
    xt = (1 - tt) * x0 + tt * noise
    loss = F.mse_loss(velocity(model, text_enc, xin, roles, xt, t, prompts), noise - x0)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
        for e, m in ((ema_m, model), (ema_t, text_enc)):
            for pe, pm in zip(e.parameters(), m.parameters()):
                pe.lerp_(pm, 1 - args.ema)
    if step % 50 == 0:
        print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    if step % args.eval_every == 0 or step == args.steps:
        evaluate(step, args.tag)
