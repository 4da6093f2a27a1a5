#!/usr/bin/env python3
"""Reference fixtures for loading pretrained checkpoints (issue 15): sharded half-precision
safetensors and CLIP, for crates/unireal-model/tests/{weights,clip}.rs. CPU only, seconds.

Run from the repository root, after scripts/reference/model.py (it reads that script's T5):
    .venv/bin/pip install torch transformers diffusers peft safetensors tokenizers pillow
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
  flux/transformer/       tiny random diffusers.FluxTransformer2DModel with guidance_embeds (dev's
                          layout), saved by save_pretrained (config.json + diffusion_pytorch_model.safetensors)
  flux/flux1-tiny-dev.safetensors
                          the same weights in Black Forest Labs' single-file layout (flux1-dev.safetensors'
                          names: double_blocks.N.img_attn.qkv, …), converted below
  flux-schnell/transformer/, flux-schnell/flux1-tiny-schnell.safetensors
                          the same without guidance_embeds (schnell's layout)
  flux_io.safetensors     unpacked latents [2, 4, 8, 12], T5-like states, CLIP-like pooled vectors,
                          timesteps and guidance, and the transformers' outputs (dev: `out_dev`,
                          schnell: `out_schnell`), unpacked to [2, 4, 8, 12]
  flux/                   …completed into a tiny FLUX.1-dev FluxPipeline directory as Black Forest
                          Labs ship it: model_index.json, scheduler/ (dynamic shifting), vae/ (16→4
                          latent channels, Flux's scaling and shift, no quant convs), text_encoder/
                          (the CLIP fixture's text tower as CLIPTextModel), tokenizer/ (vocab.json +
                          merges.txt only, no tokenizer.json, like FLUX.1-dev), text_encoder_2/ (the
                          bf16 two-shard T5 above), tokenizer_2/
  flux_pipeline_io.safetensors
                          `noise` [1, 4, 8, 12] (unpacked) and FluxPipeline's 4-step latents from it
                          (prompt PROMPTS[0], 48x32 px, guidance_scale 3.5, output_type="latent",
                          unpacked) as `latents`
  flux-lora/pytorch_lora_weights.safetensors
                          a PEFT LoRA (rank 4, lora_alpha 8, so scale 2, in the file's
                          lora_adapter_metadata) on every block linear of flux/transformer/ (the
                          modules train.lora's targets attn + mlp + mod adapt), A and B random,
                          saved by FluxPipeline.save_lora_weights
  flux_lora_io.safetensors
                          flux/transformer/ with that LoRA (load_lora_weights) on flux_io's
                          inputs (`out_dev`), and FluxPipeline's 4-step latents with it from
                          flux_pipeline_io's noise and prompt (`latents`)
  clip_io.safetensors     two prompts padded to 77 tokens as CLIPTokenizer pads them (ids,
                          mask), the text tower's last_hidden_state, pooled output and text
                          embeds; the processor's pixel_values for datasets/samples/images/
                          chelsea.png and coffee.png, the vision tower's last_hidden_state,
                          pooled output and image embeds
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import tiny_vae  # noqa: E402  (the same tiny VAE as the model fixtures')

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
    <|startoftext|> … <|endoftext|>) over a small deterministic vocabulary: every byte-level
    character alone and as a word end, plus merges that spell each word of the prompts whole
    (other words fall back to characters). Written by transformers' CLIPTokenizer, so
    tokenizer.json is the real layout."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {}
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = []
    for word in sorted({w for p in PROMPTS for w in p.lower().split()}):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            if left + right not in vocab:
                merges.append((left, right))
                vocab[left + right] = len(vocab)
            left = left + right
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
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


def bfl_from_diffusers(sd, double, single):
    """diffusers' FluxTransformer2DModel state dict in Black Forest Labs' names (the inverse of
    diffusers' scripts/convert_flux_to_diffusers.py): fused qkv, `linear1` = q|k|v|mlp, the
    final adaLN's (scale, shift) halves swapped back to (shift, scale)."""
    out = {}

    def mlp(dst, src):
        for p in ("weight", "bias"):
            if f"{src}.linear_1.{p}" in sd:
                out[f"{dst}.in_layer.{p}"] = sd[f"{src}.linear_1.{p}"]
                out[f"{dst}.out_layer.{p}"] = sd[f"{src}.linear_2.{p}"]

    mlp("time_in", "time_text_embed.timestep_embedder")
    mlp("vector_in", "time_text_embed.text_embedder")
    mlp("guidance_in", "time_text_embed.guidance_embedder")
    for p in ("weight", "bias"):
        out[f"img_in.{p}"] = sd[f"x_embedder.{p}"]
        out[f"txt_in.{p}"] = sd[f"context_embedder.{p}"]
        for i in range(double):
            s, d = f"transformer_blocks.{i}", f"double_blocks.{i}"
            out[f"{d}.img_mod.lin.{p}"] = sd[f"{s}.norm1.linear.{p}"]
            out[f"{d}.txt_mod.lin.{p}"] = sd[f"{s}.norm1_context.linear.{p}"]
            out[f"{d}.img_attn.qkv.{p}"] = torch.cat([sd[f"{s}.attn.to_{x}.{p}"] for x in "qkv"])
            out[f"{d}.txt_attn.qkv.{p}"] = torch.cat([sd[f"{s}.attn.add_{x}_proj.{p}"] for x in "qkv"])
            out[f"{d}.img_attn.proj.{p}"] = sd[f"{s}.attn.to_out.0.{p}"]
            out[f"{d}.txt_attn.proj.{p}"] = sd[f"{s}.attn.to_add_out.{p}"]
            out[f"{d}.img_mlp.0.{p}"] = sd[f"{s}.ff.net.0.proj.{p}"]
            out[f"{d}.img_mlp.2.{p}"] = sd[f"{s}.ff.net.2.{p}"]
            out[f"{d}.txt_mlp.0.{p}"] = sd[f"{s}.ff_context.net.0.proj.{p}"]
            out[f"{d}.txt_mlp.2.{p}"] = sd[f"{s}.ff_context.net.2.{p}"]
        for i in range(single):
            s, d = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
            out[f"{d}.modulation.lin.{p}"] = sd[f"{s}.norm.linear.{p}"]
            out[f"{d}.linear1.{p}"] = torch.cat([sd[f"{s}.attn.to_{x}.{p}"] for x in "qkv"] + [sd[f"{s}.proj_mlp.{p}"]])
            out[f"{d}.linear2.{p}"] = sd[f"{s}.proj_out.{p}"]
        scale, shift = sd[f"norm_out.linear.{p}"].chunk(2)
        out[f"final_layer.adaLN_modulation.1.{p}"] = torch.cat([shift, scale])
        out[f"final_layer.linear.{p}"] = sd[f"proj_out.{p}"]
    for i in range(double):
        s, d = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for src, dst in [("norm_q", "img_attn.norm.query_norm"), ("norm_k", "img_attn.norm.key_norm"),
                         ("norm_added_q", "txt_attn.norm.query_norm"), ("norm_added_k", "txt_attn.norm.key_norm")]:
            out[f"{d}.{dst}.scale"] = sd[f"{s}.attn.{src}.weight"]
    for i in range(single):
        s, d = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        out[f"{d}.norm.query_norm.scale"] = sd[f"{s}.attn.norm_q.weight"]
        out[f"{d}.norm.key_norm.scale"] = sd[f"{s}.attn.norm_k.weight"]
    assert sum(v.numel() for v in out.values()) == sum(v.numel() for v in sd.values())
    return {k: v.contiguous() for k, v in out.items()}


def pack(latents):
    """diffusers' FluxPipeline._pack_latents: [b, c, h, w] -> [b, h/2 · w/2, c · 4]."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens, h, w):
    b, _, d = tokens.shape
    c = d // 4
    x = tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def flux():
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(1)
    b, c, h, w, txt = 2, 4, 8, 12, 7
    io = {
        "latents": torch.randn(b, c, h, w),
        "text": torch.randn(b, txt, 32),
        "pooled": torch.randn(b, 32),
        "t": torch.tensor([0.7, 0.25]),
        "guidance": torch.tensor([3.5, 1.0]),
    }
    img_ids = torch.zeros(h // 2, w // 2, 3)
    img_ids[..., 1] = torch.arange(h // 2)[:, None]
    img_ids[..., 2] = torch.arange(w // 2)[None, :]
    img_ids = img_ids.reshape(-1, 3)
    for name, guidance in [("dev", True), ("schnell", False)]:
        model = FluxTransformer2DModel(
            patch_size=1,
            in_channels=c * 4,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=guidance,
            axes_dims_rope=(4, 6, 6),
        ).eval()
        with torch.no_grad():  # larger weights than the zero-ish init so every term matters
            for p in model.parameters():
                p.normal_(0.0, 0.15)
        root = OUT / ("flux" if name == "dev" else "flux-schnell")
        shutil.rmtree(root, ignore_errors=True)
        model.save_pretrained(root / "transformer", safe_serialization=True)
        save_file(bfl_from_diffusers(model.state_dict(), 2, 2), root / f"flux1-tiny-{name}.safetensors")
        with torch.no_grad():
            out = model(
                hidden_states=pack(io["latents"]),
                encoder_hidden_states=io["text"],
                pooled_projections=io["pooled"],
                timestep=io["t"],
                img_ids=img_ids,
                txt_ids=torch.zeros(txt, 3),
                guidance=io["guidance"] if guidance else None,
                return_dict=False,
            )[0]
        io[f"out_{name}"] = unpack(out, h, w)
    save_file({k: v.contiguous() for k, v in io.items()}, OUT / "flux_io.safetensors")


def flux_pipeline():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPModel, CLIPTextModel

    root = OUT / "flux"  # transformer/ is flux()'s dev model
    for sub in ["vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"]:
        shutil.rmtree(root / sub, ignore_errors=True)
    torch.manual_seed(2)
    vae = tiny_vae(scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    vae.save_pretrained(root / "vae", safe_serialization=True)
    clip = CLIPModel.from_pretrained(OUT / "clip")
    text = CLIPTextModel(clip.config.text_config).eval()
    text.load_state_dict(clip.text_model.state_dict())
    text.save_pretrained(root / "text_encoder", safe_serialization=True)
    # FLUX.1-dev's tokenizer/ has the slow tokenizer's files only.
    tok = json.loads((OUT / "clip/tokenizer.json").read_text())
    (root / "tokenizer").mkdir()
    vocab = dict(tok["model"]["vocab"])
    for t in tok["added_tokens"]:
        vocab[t["content"]] = t["id"]
    (root / "tokenizer/vocab.json").write_text(json.dumps(vocab))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    (root / "tokenizer/merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (root / "tokenizer/tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "model_max_length": 77}))
    shutil.copytree(OUT / "t5-sharded", root / "text_encoder_2")
    (root / "tokenizer_2").mkdir()
    shutil.copy(OUT / "tokenizer.json", root / "tokenizer_2/tokenizer.json")
    (root / "tokenizer_2/tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5TokenizerFast", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
        "model_max_length": 512}))
    FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    ).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "FluxPipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }, indent=1))

    pipe = FluxPipeline.from_pretrained(root, torch_dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(1, 4, 8, 12, generator=g)
    with torch.no_grad():
        out = pipe(
            prompt=PROMPTS[0],
            height=32,
            width=48,
            num_inference_steps=4,
            guidance_scale=3.5,
            latents=pack(noise),
            output_type="latent",
        ).images
    save_file({"noise": noise.contiguous(), "latents": unpack(out, 8, 12).contiguous()},
              OUT / "flux_pipeline_io.safetensors")


# The diffusers modules of every block linear: what train.lora's targets attn + mlp + mod adapt
# (a full-match regex for PEFT's target_modules; not the top-level proj_out or norm_out).
LORA_TARGETS = (
    r"(transformer_blocks\.\d+\.(norm1\.linear|norm1_context\.linear"
    r"|attn\.(to_q|to_k|to_v|add_q_proj|add_k_proj|add_v_proj|to_out\.0|to_add_out)"
    r"|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2))"
    r"|single_transformer_blocks\.\d+\.(norm\.linear|attn\.(to_q|to_k|to_v)|proj_mlp|proj_out))"
)


def flux_lora():
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    root = OUT / "flux"
    dest = OUT / "flux-lora"
    shutil.rmtree(dest, ignore_errors=True)
    pipe = FluxPipeline.from_pretrained(root, torch_dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS)
    pipe.transformer.add_adapter(config)
    torch.manual_seed(5)
    with torch.no_grad():  # B is zero at init: random A and B so that every module counts
        for name, p in pipe.transformer.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.2)
    FluxPipeline.save_lora_weights(
        dest,
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        transformer_lora_adapter_metadata=config.to_dict(),
    )

    # Loaded back as a user would, into a fresh pipeline.
    pipe = FluxPipeline.from_pretrained(root, torch_dtype=torch.float32)
    pipe.load_lora_weights(dest / "pytorch_lora_weights.safetensors")
    io = load_file(OUT / "flux_io.safetensors")
    h, w, txt = 8, 12, io["text"].shape[1]
    img_ids = torch.zeros(h // 2, w // 2, 3)
    img_ids[..., 1] = torch.arange(h // 2)[:, None]
    img_ids[..., 2] = torch.arange(w // 2)[None, :]
    with torch.no_grad():
        out = pipe.transformer(
            hidden_states=pack(io["latents"]),
            encoder_hidden_states=io["text"],
            pooled_projections=io["pooled"],
            timestep=io["t"],
            img_ids=img_ids.reshape(-1, 3),
            txt_ids=torch.zeros(txt, 3),
            guidance=io["guidance"],
            return_dict=False,
        )[0]
        noise = load_file(OUT / "flux_pipeline_io.safetensors")["noise"]
        latents = pipe(
            prompt=PROMPTS[0],
            height=32,
            width=48,
            num_inference_steps=4,
            guidance_scale=3.5,
            latents=pack(noise),
            output_type="latent",
        ).images
    save_file({"out_dev": unpack(out, h, w).contiguous(), "latents": unpack(latents, 8, 12).contiguous()},
              OUT / "flux_lora_io.safetensors")


if __name__ == "__main__":
    t5_sharded()
    clip()
    flux()
    flux_pipeline()
    flux_lora()
    print(f"wrote fixtures under {OUT}")
