#!/usr/bin/python3
"""Prompt-following metric of the demo model, computed with the PyTorch modules on the EXPORTED
weights (fp16 up-cast: the very numbers vksd runs), so vksd's C++ output can be scored the same
way and compared.

Protocol:
  * 64 training captions: the canonical captions of images k * N // 64, k = 0..63
    (written with --write-prompts, one per line, for running them through `vksd generate`);
  * each generated with DDIM, 20 steps, guidance 5, initial latent torch.manual_seed(42);
    torch.randn(1, 4, 64 / f, 64 / f) (f: the VAE's downsampling factor; the same noise for
    every caption), empty negative prompt;
  * features: the image area-downsampled to 16x16, converted sRGB -> CIE Lab (D65), flattened;
  * rank of the caption's own training image among all N training images by L2 distance to the
    generated image's features (0 = nearest);
  * reported: top-5 rate (rank < 5), top-1% rate (rank < ceil(N / 100)), median rank. Chance
    level is 5 / N and 1% respectively.

Usage:
  /usr/bin/python3 weights/eval.py [--model weights/demo/model.safetensors]
  /usr/bin/python3 weights/eval.py --write-prompts prompts.txt
  /usr/bin/python3 weights/eval.py --images DIR   # score DIR/000.png .. DIR/063.png (e.g. vksd's)
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import ClipTokenizer  # noqa: E402
from sampling import ddim_sample, decode_to_u8, grid, lab_features  # noqa: E402
from sd_modules import StableDiffusion  # noqa: E402
from st_io import read_safetensors  # noqa: E402

DATA = os.path.join(HERE, "data")
NUM_PROMPTS, SEED, STEPS, GUIDANCE = 64, 42, 20, 5.0


def load_exported(path):
    """PyTorch model from an exported model.safetensors + model.json + bpe_vocab.txt.gz."""
    d = os.path.dirname(path)
    with open(os.path.join(d, "model.json")) as f:
        v = json.load(f)
    cfg = {
        "unet": {k: v["unet"][k] for k in ("model_channels", "channel_mult", "num_res_blocks",
                                             "attention_levels", "num_heads", "transformer_depth")},
        "vae": {k: v["vae"][k] for k in ("ch", "ch_mult", "num_res_blocks")},
        "text_encoder": {k: v["text_encoder"][k] for k in ("vocab_size", "width", "layers", "heads", "max_length")},
    }
    model = StableDiffusion(cfg).eval()
    tensors, _ = read_safetensors(path)
    sd = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(tensors[k].astype(np.float32) if tensors[k].dtype == np.float16
                                               else tensors[k].copy()) for k in sd}, strict=True)
    tok = ClipTokenizer(os.path.join(d, "bpe_vocab.txt.gz"))
    assert (tok.vocab_size, tok.bos, tok.eos) == (v["text_encoder"]["vocab_size"], v["text_encoder"]["bos_token"],
                                                  v["text_encoder"]["eos_token"])
    return model, tok, v["vae"]["scale_factor"]


def eval_prompts(items):
    n = len(items)
    idx = [k * n // NUM_PROMPTS for k in range(NUM_PROMPTS)]
    return idx, [items[i]["caption"] for i in idx]


def ranks(generated_u8, own_idx, train_u8):
    feats = lab_features(train_u8)
    g = lab_features(generated_u8)
    out = []
    for f, i in zip(g, own_idx):
        d = ((feats - f) ** 2).sum(1)
        out.append(int((d < d[i]).sum()))
    return out


def summary(r, n):
    r = np.array(r)
    k1 = math.ceil(n / 100)
    return {"prompts": len(r), "train_images": n, "top5_rate": float((r < 5).mean()),
            f"top1pct_rate (rank < {k1})": float((r < k1).mean()), "median_rank": float(np.median(r)),
            "mean_rank": float(r.mean()), "chance_top5": 5 / n, "chance_top1pct": k1 / n}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HERE, "demo", "model.safetensors"))
    ap.add_argument("--images", help="score these images (000.png ..) instead of generating")
    ap.add_argument("--write-prompts", help="write the 64 evaluation captions to this file and exit")
    ap.add_argument("--out", help="where to write eval.json and eval_grid.png (default: beside the model)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with open(os.path.join(DATA, "emoji64.json"), encoding="utf-8") as f:
        items = json.load(f)["items"]
    idx, prompts = eval_prompts(items)
    if args.write_prompts:
        with open(args.write_prompts, "w", encoding="utf-8") as f:
            f.write("\n".join(prompts) + "\n")
        print(f"{len(prompts)} prompts -> {args.write_prompts}")
        return
    with np.load(os.path.join(DATA, "emoji64.npz")) as z:
        train_u8 = z["images"]

    if args.images:
        from PIL import Image
        gen = np.stack([np.asarray(Image.open(os.path.join(args.images, f"{k:03d}.png")).convert("RGB"))
                        for k in range(NUM_PROMPTS)])
        out_dir = args.out or args.images
        source = args.images
    else:
        model, tok, scale = load_exported(args.model)
        torch.manual_seed(SEED)
        side = train_u8.shape[1] // 2 ** (len(model.first_stage_model.decoder.up) - 1)  # latent size
        x_T = torch.randn(1, 4, side, side)
        gen = []
        for b in range(0, NUM_PROMPTS, 16):
            p = prompts[b:b + 16]
            ids = torch.tensor([tok.ids77(s) for s in p])
            un = torch.tensor([tok.ids77("")] * len(p))
            lat = ddim_sample(model, ids, un, x_T.expand(len(p), -1, -1, -1).contiguous(), STEPS, GUIDANCE)
            gen.append(decode_to_u8(model, lat, scale))
        gen = np.concatenate(gen)
        out_dir = args.out or os.path.dirname(args.model)
        source = args.model

    r = ranks(gen, idx, train_u8)
    s = summary(r, len(items))
    s.update({"source": source, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE, "sampler": "ddim",
              "per_prompt": [{"index": i, "caption": p, "rank": k} for i, p, k in zip(idx, prompts, r)]})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "eval.json"), "w", encoding="utf-8") as f:
        json.dump(s, f, indent=1, ensure_ascii=False)
    from PIL import Image
    pairs = np.concatenate([np.stack([train_u8[i], g]) for i, g in zip(idx, gen)])  # own image | generated
    Image.fromarray(grid(pairs, 16)).save(os.path.join(out_dir, "eval_grid.png"))
    print(json.dumps({k: v for k, v in s.items() if k != "per_prompt"}, indent=1))


if __name__ == "__main__":
    main()
