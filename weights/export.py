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
  <out>/bpe_vocab.txt.gz   the CLIP-format BPE merges the text encoder was trained with (named
                           by model.json's "tokenizer": {"vocab": ...})
  <out>/eval_set.bin       the prompt-following evaluation set for vksd's C++ test
                           (tests/test_demo_model.cpp): every training image's caption and 16x16
                           CIE Lab features, quantised and zlib-compressed, and the indices of
                           the 64 evaluation captions (format: weights/README.md)

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
import struct
import sys
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import DEFAULT_VOCAB, ClipTokenizer  # noqa: E402
from sd_modules import StableDiffusion, make_schedule  # noqa: E402
from st_io import read_safetensors, write_safetensors  # noqa: E402
from train import Ema, diffusion_params  # noqa: E402
from eval import eval_prompts  # noqa: E402
from sampling import lab_features  # noqa: E402

REFERENCE = "/work/shared/vectors/tiny/model.safetensors"
MAX_BYTES = 20 * 1000 * 1000
DATA = os.path.join(HERE, "data")
VOCAB_FILE = "bpe_vocab.txt.gz"
SAMPLE_SIZE = 64  # the training resolution: vksd generate's default -W/-H for this model

# eval_set.bin: magic, uncompressed payload size (u32 LE), then the zlib-compressed payload.
EVAL_MAGIC = b"VKSDEVL1"
EVAL_FEATURE_SIZE = 16
# Lab quantisation, per channel: value = q * scale + offset, q = round((value - offset) / scale)
# clamped to 0..255. L* in [0, 100] in steps of 100/255; a*, b* (sRGB gamut: about -86..98 and
# -108..95) in steps of 1 around 128.
EVAL_QUANT = ((100.0 / 255.0, 0.0), (1.0, -128.0), (1.0, -128.0))


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
    steps = {"vae_steps": vae["step"], "diffusion_steps": diff["step"]}
    if tr.get("decoder_steps", 0) > 0:  # the fine-tuned decoder (same encoder, same latents)
        dec = torch.load(os.path.join(run_dir, "decoder.pt"))
        if dec["step"] < tr["decoder_steps"]:
            print(f"warning: exporting an unfinished decoder fine-tune ({dec['step']}/{tr['decoder_steps']})")
        model.first_stage_model.load_state_dict(dec["vae"])
        steps["decoder_steps"] = dec["step"]
    ema = Ema(diffusion_params(model), tr["ema_decay"])
    ema.load_state_dict(diff["ema"])
    ema.copy_to(diffusion_params(model))
    return cfg, model, lat["scale_factor"], steps


def vksd_config(cfg, scale_factor):
    u, v, t = cfg["unet"], cfg["vae"], cfg["text_encoder"]
    return {
        "name": "vksd-demo-emoji64",
        "sample_size": SAMPLE_SIZE,
        "tokenizer": {"vocab": VOCAB_FILE},
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


def quantise_lab(feats):
    """[N, S*S*3] float Lab -> uint8 [N, S*S*3] (EVAL_QUANT), and the worst rounding error."""
    f = feats.reshape(len(feats), -1, 3)
    q = np.empty(f.shape, np.uint8)
    for c, (scale, offset) in enumerate(EVAL_QUANT):
        q[..., c] = np.clip(np.rint((f[..., c] - offset) / scale), 0, 255)
    back = q.astype(np.float64) * np.array([sc for sc, _ in EVAL_QUANT]) + np.array([o for _, o in EVAL_QUANT])
    return q.reshape(len(feats), -1), float(np.abs(back - f).max())


def write_eval_set(path):
    """The evaluation set vksd's C++ quality test scores against (the images themselves are not
    redistributed; their 16x16 Lab features are what the metric compares)."""
    with open(os.path.join(DATA, "emoji64.json"), encoding="utf-8") as f:
        items = json.load(f)["items"]
    with np.load(os.path.join(DATA, "emoji64.npz")) as z:
        images = z["images"]
    assert len(items) == len(images)
    idx, _ = eval_prompts(items)
    feats = lab_features(images, EVAL_FEATURE_SIZE)
    q, err = quantise_lab(feats)
    payload = [struct.pack("<3I", len(items), EVAL_FEATURE_SIZE, len(idx))]
    payload += [struct.pack("<2f", scale, offset) for scale, offset in EVAL_QUANT]
    payload.append(struct.pack(f"<{len(idx)}I", *idx))
    for it in items:
        b = it["caption"].encode("utf-8")
        payload.append(struct.pack("<H", len(b)) + b)
    payload.append(q.tobytes())
    raw = b"".join(payload)
    with open(path, "wb") as f:
        f.write(EVAL_MAGIC + struct.pack("<I", len(raw)) + zlib.compress(raw, 9))

    # Oracle check through the stored (quantised) features: each evaluation image, exact,
    # must find itself first (rank = number of images strictly nearer than its own).
    deq = read_eval_features(path)
    ranks = [int((((deq - feats[i]) ** 2).sum(1) < ((deq[i] - feats[i]) ** 2).sum()).sum()) for i in idx]
    if max(ranks) > 0:
        sys.exit(f"{path}: quantised features misrank the training images themselves: {ranks}")
    print(f"{path}: {len(items)} images, {len(idx)} evaluation captions, Lab quantisation error <= {err:.3f}, "
          f"oracle ranks all 0")


def read_eval_features(path):
    """Dequantised features [N, S*S*3] of an eval_set.bin (the reader vksd's test mirrors)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == EVAL_MAGIC
    (size,) = struct.unpack_from("<I", data, 8)
    raw = zlib.decompress(data[12:])
    assert len(raw) == size
    n, s, e = struct.unpack_from("<3I", raw, 0)
    pos = 12
    quant = [struct.unpack_from("<2f", raw, pos + 8 * c) for c in range(3)]
    pos += 24 + 4 * e
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", raw, pos)
        pos += 2 + ln
    q = np.frombuffer(raw, np.uint8, n * s * s * 3, pos).reshape(n, s * s, 3).astype(np.float64)
    assert pos + n * s * s * 3 == len(raw)
    return (q * np.array([a for a, _ in quant]) + np.array([b for _, b in quant])).reshape(n, -1)


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
    shutil.copyfile(DEFAULT_VOCAB, os.path.join(args.out, VOCAB_FILE))
    write_eval_set(os.path.join(args.out, "eval_set.bin"))

    n = check_export(st, cfg)
    sizes = {f: os.path.getsize(os.path.join(args.out, f))
             for f in ("model.safetensors", "model.json", VOCAB_FILE, "eval_set.bin")}
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
