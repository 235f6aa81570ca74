#!/usr/bin/python3
"""Export a training run as vksd's demo model: an SD 1.x single-file checkpoint, its vksd model
config and its BPE vocabulary.

  <out>/model.safetensors  original single-file layout (model.diffusion_model.*,
                           first_stage_model.*, cond_stage_model.transformer.text_model.*):
                           network weights fp16 (UNet and text encoder: the EMA weights), plus
                           the LDM schedule buffers (float32) and position_ids (int64) as the
                           original checkpoints carry them
  <out>/model.json         vksd model config (docs/model-config.md): head counts, special
                           token ids, latent scale factor, schedule, and the shape-derived
                           fields (checked by vksd against the tensors)
  <out>/bpe_vocab.txt.gz   the CLIP-format BPE merges the text encoder was trained with

The export is then checked: every key follows the SD 1.x scheme of the reference checkpoint
(/work/shared/vectors/tiny/model.safetensors, same names with other block counts), and the file
loads back into the PyTorch modules with strict key/shape matching.

Usage: /usr/bin/python3 weights/export.py --run demo [--out weights/demo] [--fp32]
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import DEFAULT_VOCAB, ClipTokenizer  # noqa: E402
from sd_modules import StableDiffusion, make_schedule  # noqa: E402
from st_io import read_safetensors, write_safetensors  # noqa: E402
from train import Ema, diffusion_params  # noqa: E402

REFERENCE = "/work/shared/vectors/tiny/model.safetensors"
MAX_BYTES = 20 * 1000 * 1000


def load_run(run_dir):
    """The run's model with the exported weights: VAE as trained, UNet + text encoder EMA."""
    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = json.load(f)
    model = StableDiffusion(cfg).eval()
    vae = torch.load(os.path.join(run_dir, "vae.pt"))
    diff = torch.load(os.path.join(run_dir, "diffusion.pt"))
    lat = torch.load(os.path.join(run_dir, "latents.pt"))
    tr = cfg["train"]
    if vae["step"] < tr["vae_steps"] or diff["step"] < tr["diffusion_steps"]:
        print(f"warning: exporting an unfinished run (vae {vae['step']}/{tr['vae_steps']}, "
              f"diffusion {diff['step']}/{tr['diffusion_steps']})")
    model.first_stage_model.load_state_dict(vae["vae"])
    ema = Ema(diffusion_params(model), tr["ema_decay"])
    ema.load_state_dict(diff["ema"])
    ema.copy_to(diffusion_params(model))
    return cfg, model, lat["scale_factor"], {"vae_steps": vae["step"], "diffusion_steps": diff["step"]}


def vksd_config(cfg, scale_factor):
    u, v, t = cfg["unet"], cfg["vae"], cfg["text_encoder"]
    return {
        "name": "vksd-demo-emoji64",
        "unet": {
            "in_channels": 4, "out_channels": 4, "model_channels": u["model_channels"],
            "channel_mult": u["channel_mult"], "num_res_blocks": u["num_res_blocks"],
            "attention_levels": u["attention_levels"], "transformer_depth": u["transformer_depth"],
            "context_dim": t["width"], "use_linear_in_transformer": False,
            "num_heads": u["num_heads"], "gn_eps": 1e-5, "ln_eps": 1e-5,
        },
        "text_encoder": {
            "vocab_size": t["vocab_size"], "max_length": t["max_length"], "width": t["width"],
            "layers": t["layers"], "mlp_dim": 4 * t["width"], "heads": t["heads"], "ln_eps": 1e-5,
            "quick_gelu": True, "bos_token": t["bos_token"], "eos_token": t["eos_token"],
            "pad_token": t["eos_token"],
        },
        "vae": {
            "in_channels": 3, "out_channels": 3, "ch": v["ch"], "ch_mult": v["ch_mult"],
            "num_res_blocks": v["num_res_blocks"], "z_channels": 4, "embed_dim": 4, "gn_eps": 1e-6,
            "scale_factor": round(float(scale_factor), 6),
        },
        "schedule": {
            "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
        },
    }


def key_template(k):
    return re.sub(r"\.\d+\.", ".N.", re.sub(r"\.\d+\.", ".N.", k))


def check_export(path, cfg):
    """Names follow the reference SD 1.x checkpoint's scheme; the file loads back strictly."""
    ours, _ = read_safetensors(path)
    ref, _ = read_safetensors(REFERENCE)
    ref_kinds = {(key_template(k), v.ndim, str(v.dtype)) for k, v in ref.items()}
    our_kinds = {(key_template(k), v.ndim, str(v.dtype).replace("float16", "float32")) for k, v in ours.items()}
    bad = [k for k, v in ours.items()
           if (key_template(k), v.ndim, str(v.dtype).replace("float16", "float32")) not in ref_kinds]
    if bad:
        sys.exit(f"{len(bad)} exported keys do not follow the SD 1.x scheme, e.g. {bad[:5]}")
    missing = ref_kinds - our_kinds  # every kind of tensor the reference has must be there
    if missing:
        sys.exit(f"exported file lacks tensor kinds of the reference: {sorted(missing)[:5]}")
    model = StableDiffusion(cfg)
    sd = model.state_dict()
    schedule = make_schedule()
    extra = set(ours) - set(sd) - set(schedule)
    assert not extra, extra
    model.load_state_dict({k: torch.from_numpy(ours[k].astype(np.float32) if ours[k].dtype == np.float16 else ours[k].copy())
                           for k in sd}, strict=True)
    return len(ours)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="demo")
    ap.add_argument("--out", default=os.path.join(HERE, "demo"))
    ap.add_argument("--fp32", action="store_true", help="store network weights as float32")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run_dir = os.path.join(HERE, "runs", args.run)
    cfg, model, scale_factor, steps = load_run(run_dir)
    tok = ClipTokenizer(DEFAULT_VOCAB)
    if tok.vocab_size != cfg["text_encoder"]["vocab_size"]:
        sys.exit(f"{DEFAULT_VOCAB} ({tok.vocab_size} tokens) is not the run's vocabulary")

    tensors = {}
    for k, v in model.state_dict().items():
        a = v.detach().numpy()
        if k.endswith("position_ids"):
            tensors[k] = a.astype(np.int64)
        else:
            tensors[k] = a.astype(np.float32 if args.fp32 else np.float16)
            if not args.fp32 and not np.isfinite(tensors[k]).all():
                sys.exit(f"{k}: not representable in float16")
    for k, v in make_schedule().items():
        tensors[k] = v.astype(np.float32)
    vcfg = vksd_config(cfg, scale_factor)
    os.makedirs(args.out, exist_ok=True)
    st = os.path.join(args.out, "model.safetensors")
    meta = {
        "format": "pt",
        "description": "vksd demo model: a scaled-down Stable Diffusion 1.x trained from scratch on CPU "
                       "on 64x64 emoji (Twemoji CC-BY 4.0, Noto Emoji Apache-2.0); see weights/README.md",
        "image_size": "64",
        "training_steps": json.dumps(steps),
        "config": json.dumps(vcfg),
    }
    write_safetensors(st, tensors, meta)
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(vcfg, f, indent=1)
        f.write("\n")
    shutil.copyfile(DEFAULT_VOCAB, os.path.join(args.out, "bpe_vocab.txt.gz"))

    n = check_export(st, cfg)
    sizes = {f: os.path.getsize(os.path.join(args.out, f)) for f in ("model.safetensors", "model.json", "bpe_vocab.txt.gz")}
    total = sum(sizes.values())
    params = {p: sum(v.size for k, v in tensors.items() if k.startswith(p))
              for p in ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")}
    print(f"{args.out}: {n} tensors, params UNet {params['model.diffusion_model.'] / 1e6:.2f}M, VAE "
          f"{params['first_stage_model.'] / 1e6:.2f}M, text {params['cond_stage_model.'] / 1e6:.2f}M; "
          f"{', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sizes.items())}; total {total / 1e6:.2f} MB")
    print("keys follow the SD 1.x single-file scheme; the file loads back strictly")
    if total > MAX_BYTES:
        sys.exit(f"total {total} bytes exceeds the {MAX_BYTES}-byte budget")


if __name__ == "__main__":
    main()
