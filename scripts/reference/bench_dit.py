#!/usr/bin/env python3
"""Forward + backward of the DiT in PyTorch on the CPU: the baseline of scripts/bench-model.sh.

The model is scripts/reference/model.py's plain-PyTorch DiT (the parity reference, same
equations as crates/unireal-model/src/dit.rs) at the Rust presets' sizes, with the workload of
crates/unireal-model/benches/dit.rs. Prints one JSON line per preset: median ms per step.

    .venv/bin/python scripts/reference/bench_dit.py [tiny|small]... [--steps N] [--threads T] [--profile]

--profile adds one JSON line per preset with where a step's CPU time goes, from
torch.profiler: matrix products (mm, addmm, bmm and their backward), fused attention, and the
rest (elementwise, norms, copies), in ms of self time per step.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import DiT  # noqa: E402

COMMON = dict(mlp_ratio=4.0, patch=2, max_frames=8, rope_theta=10000.0, time_factor=1000.0, time_freq_dim=256)
PRESETS = {
    # (config, batch, latent side, text tokens): as benches/dit.rs's workload()
    "tiny": (dict(COMMON, in_channels=12, hidden=192, heads=4, double_blocks=2, single_blocks=2, text_dim=64,
                  axes_dim=[8, 20, 20]), 2, 32, 16),
    "small": (dict(COMMON, in_channels=16, hidden=768, heads=12, double_blocks=2, single_blocks=6, text_dim=256,
                   axes_dim=[16, 24, 24]), 1, 32, 32),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("presets", nargs="*", default=["tiny", "small"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    for name in a.presets:
        cfg, b, side, lt = PRESETS[name]
        torch.manual_seed(0)
        model = DiT(cfg)
        c = cfg["in_channels"]
        params = sum(p.numel() for p in model.parameters())

        def step():
            inputs = torch.rand(b, 1, c, side, side) * 2 - 1
            outputs = torch.rand(b, 1, c, side, side) * 2 - 1
            text = torch.rand(b, lt, cfg["text_dim"]) * 2 - 1
            target = torch.rand(b, 1, c, side, side) * 2 - 1
            out = model(inputs, torch.full((b, 1), 1), outputs, torch.full((b,), 0.5), text, None)
            loss = (out - target).pow(2).mean()
            model.zero_grad(set_to_none=True)
            loss.backward()
            loss.item()

        step()
        times = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        print(json.dumps({"impl": "pytorch", "preset": name, "params": params, "threads": torch.get_num_threads(),
                          "ms_per_step": round(times[len(times) // 2], 1)}))
        if a.profile:
            print(json.dumps({"impl": "pytorch", "preset": name, "profile_ms_per_step": profile(step, a.steps)}))


def profile(step, steps):
    """Self CPU time per step by kind of op (leaf ops only, so nothing is counted twice)."""
    from torch.profiler import ProfilerActivity, profile as prof

    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(steps):
            step()
    kinds = {}
    for e in p.key_averages():
        n = e.key
        if any(k in n for k in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")):
            kind = "matmul"
        elif "attention" in n:
            kind = "fused_attention"
        else:
            kind = "other"
        kinds[kind] = kinds.get(kind, 0.0) + e.self_cpu_time_total / 1e3 / steps
    return {k: round(v, 1) for k, v in sorted(kinds.items())}


if __name__ == "__main__":
    main()
