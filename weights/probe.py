#!/usr/bin/python3
"""Score a training run's current checkpoint without exporting it: eval.py's protocol (64
training captions, DDIM 20 steps, guidance 5, seed 42, 16x16 Lab ranks) on the run's EMA
weights in float32, plus the same rank computed in latent space (the generated latent against
every training image's posterior mean), which does not depend on how good the decoder is.
Meant for deciding about a run while it trains; the numbers that count are eval.py's and the
C++ test's on the export. With --vae it scores the run's VAE alone instead: each evaluation
image encoded (posterior mean) and decoded again, which bounds what the diffusion model can reach.

  /usr/bin/python3 weights/probe.py --run demo [--grid out.png] [--vae]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eval import DATA, GUIDANCE, NUM_PROMPTS, SEED, STEPS, eval_prompts, ranks, summary  # noqa: E402
from export import load_run  # noqa: E402
from bpe import DEFAULT_VOCAB, ClipTokenizer  # noqa: E402
from sampling import ddim_sample, decode_to_u8, grid  # noqa: E402
from sd_modules import StableDiffusion  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="demo")
    ap.add_argument("--grid", help="write own image | generated pairs here")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vae", action="store_true", help="score the VAE's reconstructions instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = os.path.join(HERE, "runs", args.run)
    with open(os.path.join(DATA, "emoji64.json"), encoding="utf-8") as f:
        items = json.load(f)["items"]
    with np.load(os.path.join(DATA, "emoji64.npz")) as z:
        train_u8 = z["images"]
    idx, prompts = eval_prompts(items)
    if args.vae:
        gen = vae_reconstructions(run_dir, train_u8[idx])
        print(json.dumps({"run": args.run, "vae_reconstructions": summary(ranks(gen, idx, train_u8), len(items))}))
        write_grid(args.grid, train_u8, idx, gen)
        return
    cfg, model, scale, steps = load_run(run_dir)
    lat = torch.load(os.path.join(run_dir, "latents.pt"))
    tok = ClipTokenizer(DEFAULT_VOCAB)
    torch.manual_seed(SEED)
    x_T = torch.randn(1, *lat["mean"].shape[1:])
    ids = torch.tensor([tok.ids77(p) for p in prompts])
    un = torch.tensor([tok.ids77("")] * NUM_PROMPTS)
    out = ddim_sample(model, ids, un, x_T.expand(NUM_PROMPTS, -1, -1, -1).contiguous(), STEPS, GUIDANCE)
    gen = decode_to_u8(model, out, scale)
    s = summary(ranks(gen, idx, train_u8), len(items))
    d = torch.cdist((out / scale).flatten(1), lat["mean"].flatten(1))
    lr = np.array([int((d[k] < d[k, i]).sum()) for k, i in enumerate(idx)])
    print(json.dumps({"run": args.run, **steps, "lab": {k: round(v, 4) for k, v in s.items()},
                      "latent": {"top5_rate": float((lr < 5).mean()), "top1pct_rate": float((lr < 70).mean()),
                                 "median_rank": float(np.median(lr))}}))
    write_grid(args.grid, train_u8, idx, gen)


def write_grid(path, train_u8, idx, gen):
    if path:
        from PIL import Image
        pairs = np.concatenate([np.stack([train_u8[i], g]) for i, g in zip(idx, gen)])
        Image.fromarray(grid(pairs, 16)).save(path)


@torch.no_grad()
def vae_reconstructions(run_dir, images_u8):
    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = json.load(f)
    vae = StableDiffusion(cfg).first_stage_model.eval()
    name = "decoder.pt" if cfg["train"].get("decoder_steps", 0) > 0 else "vae.pt"
    vae.load_state_dict(torch.load(os.path.join(run_dir, name))["vae"])
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    img = vae.decode(vae.encode(x)[0])
    return ((img.clamp(-1, 1) + 1) / 2 * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


if __name__ == "__main__":
    main()
