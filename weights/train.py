#!/usr/bin/python3
"""Train vksd's embedded demo model on CPU: a scaled-down Stable Diffusion 1.x (same
architecture family and parameter names, see sd_modules.py) on 64x64 emoji.

Stages (each resumable; a finished stage is skipped on rerun):
  vae        AutoencoderKL, 64x64x3 -> 4x16x16: L1 + L2 + image-gradient L1 (sharpness, no
             perceptual net) + a small KL term, on posterior samples as LDM trains it.
  latents    encode every training image once (posterior mean and log-variance) and fix the
             latent scale factor = 1 / std(latents) (LDM's scale_by_std).
  diffusion  CLIP text encoder + UNet trained jointly from scratch: eps-prediction, SD's
             scaled-linear schedule (0.00085..0.012, 1000 steps), uniform timesteps, 10%
             empty captions (classifier-free guidance), EMA of the weights.

Everything lives in weights/runs/<run>/: config.json, <stage>.pt checkpoints (weights, EMA,
optimizer and RNG states: a resumed run continues exactly), <stage>_losses.csv, preview PNGs.

Usage:
  /usr/bin/python3 weights/train.py --run demo --threads 2          # the full run (see README)
  /usr/bin/python3 weights/train.py --run smoke --vae-steps 20 --diffusion-steps 20
"""
import argparse
import csv
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import DEFAULT_VOCAB, ClipTokenizer  # noqa: E402
from sampling import ddim_sample, decode_to_u8, grid  # noqa: E402
from sd_modules import StableDiffusion, make_schedule  # noqa: E402

DATA = os.path.join(HERE, "data")
RUNS = os.path.join(HERE, "runs")

# The demo architecture. Channel counts are multiples of 32 (GroupNorm(32)).
ARCH = {
    "unet": {"model_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
             "attention_levels": [False, True, True], "num_heads": 2, "transformer_depth": 1},
    "vae": {"ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1},
    "text_encoder": {"width": 128, "layers": 3, "heads": 2, "max_length": 77},
}
TRAIN = {
    "seed": 1234,
    "vae_steps": 3000, "vae_batch": 8, "vae_lr": 2e-4, "kl_weight": 1e-6, "grad_weight": 0.5,
    "diffusion_steps": 6000, "diffusion_batch": 32, "diffusion_lr": 2e-4, "warmup": 300,
    "weight_decay": 0.01, "ema_decay": 0.999, "uncond_prob": 0.1, "grad_clip": 1.0,
    "ckpt_every": 250,
}
PREVIEW_PROMPTS = ["red apple", "green apple", "grinning face, twitter style", "red heart",
                   "waving hand, dark skin tone, google style", "dog face", "sun with face", "pizza"]


# ------------------------------------------------------------------------------------- utils

def cosine_lr(step, total, base, warmup):
    """Linear warm-up, then cosine decay to 10% of `base`."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state(gen):
    return {"torch": torch.get_rng_state(), "gen": gen.get_state(), "python": random.getstate()}


def set_rng_state(s, gen):
    torch.set_rng_state(s["torch"])
    gen.set_state(s["gen"])
    random.setstate(s["python"])


class CsvLog:
    def __init__(self, path, fields, resume_step):
        # Keep rows up to the resumed step (a crash may have logged steps past the checkpoint).
        rows = []
        if os.path.exists(path) and resume_step > 0:
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.f = open(path, "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        self.w.writeheader()
        self.w.writerows(rows)

    def write(self, row):
        self.w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.f.flush()


def load_images():
    with np.load(os.path.join(DATA, "emoji64.npz")) as z:
        return torch.from_numpy(z["images"]).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,64,64


def to_float(u8):
    return u8.float() / 127.5 - 1.0


def load_items():
    with open(os.path.join(DATA, "emoji64.json"), encoding="utf-8") as f:
        return json.load(f)["items"]


# -------------------------------------------------------------------------------------- VAE

def kl_sum(mean, logvar):
    """KL(N(mean, var) || N(0, 1)) summed over latent elements, per sample."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def grad_l1(a, b):
    """L1 between the images' horizontal and vertical finite differences (edge sharpness)."""
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    return (dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()


def train_vae(run_dir, cfg, model, images, threads):
    tr = cfg["train"]
    vae = model.first_stage_model
    total = tr["vae_steps"]
    path = os.path.join(run_dir, "vae.pt")
    opt = torch.optim.AdamW(vae.parameters(), lr=tr["vae_lr"], weight_decay=0.0)
    gen = torch.Generator().manual_seed(tr["seed"] + 1)
    step = 0
    if os.path.exists(path):
        ck = torch.load(path)
        vae.load_state_dict(ck["vae"])
        opt.load_state_dict(ck["opt"])
        set_rng_state(ck["rng"], gen)
        step = ck["step"]
    if step >= total:
        print(f"vae: done ({step} steps)")
        return
    print(f"vae: steps {step}..{total}, batch {tr['vae_batch']}, {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M params", flush=True)
    log = CsvLog(os.path.join(run_dir, "vae_losses.csv"),
                 ["step", "loss", "l1", "l2", "grad", "kl", "lr", "step_s", "cpu_s", "elapsed_s"], step)
    n = images.shape[0]
    t_start = time.time()
    vae.train()
    while step < total:
        t0, c0 = time.time(), time.process_time()
        lr = cosine_lr(step, total, tr["vae_lr"], 100)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n, (tr["vae_batch"],), generator=gen)
        x = to_float(images[idx])
        mean, logvar = vae.encode(x)
        z = mean + torch.randn(mean.shape, generator=gen) * (0.5 * logvar).exp()
        rec = vae.decode(z)
        l1 = (rec - x).abs().mean()
        l2 = (rec - x).pow(2).mean()
        gl = grad_l1(rec, x)
        kl = kl_sum(mean, logvar).mean() / x[0].numel()  # per image pixel, as LDM's sum-losses
        loss = l1 + l2 + tr["grad_weight"] * gl + tr["kl_weight"] * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        log.write({"step": step, "loss": loss.item(), "l1": l1.item(), "l2": l2.item(), "grad": gl.item(),
                   "kl": kl.item(), "lr": lr, "step_s": time.time() - t0, "cpu_s": time.process_time() - c0,
                   "elapsed_s": time.time() - t_start})
        if step % 50 == 0 or step == total:
            print(f"vae {step}/{total} loss {loss.item():.4f} l1 {l1.item():.4f} kl {kl.item():.3f} "
                  f"{time.time() - t0:.2f}s/step", flush=True)
        if step % tr["ckpt_every"] == 0 or step == total:
            save_atomic({"vae": vae.state_dict(), "opt": opt.state_dict(), "rng": rng_state(gen), "step": step}, path)
    vae.eval()
    with torch.no_grad():  # preview: originals (top) and reconstructions (bottom)
        idx = torch.arange(0, n, max(1, n // 8))[:8]
        x = to_float(images[idx])
        rec = vae.decode(vae.encode(x)[0])
        u8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
        save_png(grid(np.concatenate([u8(x), u8(rec)]), 8), os.path.join(run_dir, f"vae_recon_{step}.png"))


def save_png(a, path):
    from PIL import Image
    Image.fromarray(a).save(path)


# ---------------------------------------------------------------------------------- latents

@torch.no_grad()
def encode_latents(run_dir, cfg, model, images):
    path = os.path.join(run_dir, "latents.pt")
    if os.path.exists(path):
        return torch.load(path)
    vae = model.first_stage_model.eval()
    t0, c0 = time.time(), time.process_time()
    means, logvars = [], []
    for i in range(0, images.shape[0], 64):
        m, lv = vae.encode(to_float(images[i:i + 64]))
        means.append(m)
        logvars.append(lv)
    mean, logvar = torch.cat(means), torch.cat(logvars)
    g = torch.Generator().manual_seed(cfg["train"]["seed"] + 2)
    sample = mean + torch.randn(mean.shape, generator=g) * (0.5 * logvar).exp()
    scale = 1.0 / sample.std().item()
    lat = {"mean": mean, "logvar": logvar, "scale_factor": scale}
    save_atomic(lat, path)
    print(f"latents: {tuple(mean.shape)}, mean {mean.mean():.3f}, std {sample.std():.3f}, "
          f"posterior std (mean) {(0.5 * logvar).exp().mean():.4f} -> scale_factor {scale:.5f}; "
          f"{time.time() - t0:.0f} s ({time.process_time() - c0:.0f} CPU s)", flush=True)
    return lat


# -------------------------------------------------------------------------------- diffusion

def training_caption(parts, rnd):
    """The canonical caption 40% of the time, else its name with a random subset of the other
    parts (in canonical order), so short prompts ("red apple") are in-distribution."""
    if rnd.random() < 0.4:
        sel = [parts["name"], *parts["tones"], *parts["short_names"], parts["subcategory"], parts["category"], parts["style"]]
    else:
        sel = [parts["name"]]
        if rnd.random() < 0.7:
            sel += parts["tones"]
        if parts["short_names"] and rnd.random() < 0.3:
            sel += parts["short_names"]
        if rnd.random() < 0.3:
            sel.append(parts["subcategory"])
        if rnd.random() < 0.3:
            sel.append(parts["category"])
        if rnd.random() < 0.5:
            sel.append(parts["style"])
    return ", ".join(sel)


class Ema:
    def __init__(self, params, decay):
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))  # LDM's LitEma warm-up
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    def state_dict(self):
        return self.shadow

    def load_state_dict(self, s):
        for a, b in zip(self.shadow, s):
            a.copy_(b)

    @torch.no_grad()
    def copy_to(self, params):
        for s, p in zip(self.shadow, params):
            p.copy_(s)


def diffusion_params(model):
    return list(model.cond_stage_model.parameters()) + list(model.model.diffusion_model.parameters())


def train_diffusion(run_dir, cfg, model, lat, items, tok):
    tr = cfg["train"]
    total = tr["diffusion_steps"]
    path = os.path.join(run_dir, "diffusion.pt")
    unet, text = model.model.diffusion_model, model.cond_stage_model
    params = diffusion_params(model)
    decay, no_decay = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tr["diffusion_lr"])
    ema = Ema(params, tr["ema_decay"])
    gen = torch.Generator().manual_seed(tr["seed"] + 3)
    random.seed(tr["seed"] + 4)
    step = 0
    if os.path.exists(path):
        ck = torch.load(path)
        unet.load_state_dict(ck["unet"])
        text.load_state_dict(ck["text"])
        opt.load_state_dict(ck["opt"])
        ema.load_state_dict(ck["ema"])
        set_rng_state(ck["rng"], gen)
        step = ck["step"]
    if step >= total:
        print(f"diffusion: done ({step} steps)")
        return ema
    n_unet = sum(p.numel() for p in unet.parameters())
    n_text = sum(p.numel() for p in text.parameters())
    print(f"diffusion: steps {step}..{total}, batch {tr['diffusion_batch']}, UNet {n_unet / 1e6:.2f}M + "
          f"text {n_text / 1e6:.2f}M params", flush=True)
    ac = torch.from_numpy(make_schedule()["alphas_cumprod"].astype(np.float32))
    scale = lat["scale_factor"]
    mean, std = lat["mean"], (0.5 * lat["logvar"]).exp()
    ids_cache = {}

    def ids_of(caption):
        if caption not in ids_cache:
            ids_cache[caption] = tok.ids77(caption)
        return ids_cache[caption]

    log = CsvLog(os.path.join(run_dir, "diffusion_losses.csv"),
                 ["step", "loss", "lr", "step_s", "cpu_s", "elapsed_s"], step)
    n = mean.shape[0]
    t_start = time.time()
    unet.train()
    text.train()
    while step < total:
        t0, c0 = time.time(), time.process_time()
        lr = cosine_lr(step, total, tr["diffusion_lr"], tr["warmup"])
        for g in opt.param_groups:
            g["lr"] = lr
        b = tr["diffusion_batch"]
        idx = torch.randint(0, n, (b,), generator=gen)
        x0 = (mean[idx] + torch.randn(mean[idx].shape, generator=gen) * std[idx]) * scale
        caps = ["" if random.random() < tr["uncond_prob"] else training_caption(items[i]["parts"], random)
                for i in idx.tolist()]
        ids = torch.tensor([ids_of(c) for c in caps], dtype=torch.long)
        t = torch.randint(0, 1000, (b,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = ac[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(unet(xt, t, text(ids)), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tr["grad_clip"])
        opt.step()
        ema.update(step)
        step += 1
        log.write({"step": step, "loss": loss.item(), "lr": lr, "step_s": time.time() - t0,
                   "cpu_s": time.process_time() - c0, "elapsed_s": time.time() - t_start})
        if step % 50 == 0 or step == total:
            print(f"diffusion {step}/{total} loss {loss.item():.4f} lr {lr:.2e} {time.time() - t0:.2f}s/step", flush=True)
        if step % tr["ckpt_every"] == 0 or step == total:
            save_atomic({"unet": unet.state_dict(), "text": text.state_dict(), "opt": opt.state_dict(),
                         "ema": ema.state_dict(), "rng": rng_state(gen), "step": step}, path)
    return ema


@torch.no_grad()
def preview(run_dir, cfg, model, lat, tok, ema):
    """EMA weights, DDIM 20 steps, guidance 5, seed 42: one image per preview prompt."""
    live = [p.detach().clone() for p in diffusion_params(model)]
    ema.copy_to(diffusion_params(model))
    model.eval()
    torch.manual_seed(42)
    x_T = torch.randn(len(PREVIEW_PROMPTS), 4, 16, 16)
    ids = torch.tensor([tok.ids77(p) for p in PREVIEW_PROMPTS])
    un = torch.tensor([tok.ids77("")] * len(PREVIEW_PROMPTS))
    latent = ddim_sample(model, ids, un, x_T, steps=20, guidance=5.0)
    steps = cfg["train"]["diffusion_steps"]
    save_png(grid(decode_to_u8(model, latent, lat["scale_factor"]), 8), os.path.join(run_dir, f"samples_{steps}.png"))
    for p, v in zip(diffusion_params(model), live):
        p.copy_(v)


# ------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="demo", help="run name: weights/runs/<run>/")
    ap.add_argument("--stage", choices=["vae", "latents", "diffusion", "all"], default="all")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vae-steps", type=int)
    ap.add_argument("--diffusion-steps", type=int)
    ap.add_argument("--ckpt-every", type=int)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    run_dir = os.path.join(RUNS, args.run)
    os.makedirs(run_dir, exist_ok=True)
    tok = ClipTokenizer(DEFAULT_VOCAB)
    cfg_path = os.path.join(run_dir, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)  # a resumed run keeps its configuration
        if cfg["text_encoder"]["vocab_size"] != tok.vocab_size:
            sys.exit(f"{DEFAULT_VOCAB} has {tok.vocab_size} tokens, the run was started with "
                     f"{cfg['text_encoder']['vocab_size']}")
    else:
        cfg = json.loads(json.dumps(ARCH))
        cfg["text_encoder"]["vocab_size"] = tok.vocab_size
        cfg["text_encoder"]["bos_token"], cfg["text_encoder"]["eos_token"] = tok.bos, tok.eos
        cfg["train"] = dict(TRAIN)
        for k in ("vae_steps", "diffusion_steps", "ckpt_every"):
            if getattr(args, k) is not None:
                cfg["train"][k] = getattr(args, k)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=1)
    for k in ("vae_steps", "diffusion_steps"):
        if getattr(args, k) is not None and getattr(args, k) != cfg["train"][k]:
            sys.exit(f"{cfg_path} says {k} = {cfg['train'][k]}; start a new --run to change it")
    print(f"run {run_dir}: {json.dumps(cfg)}", flush=True)

    torch.manual_seed(cfg["train"]["seed"])
    model = StableDiffusion(cfg)
    images = load_images()
    items = load_items()
    assert len(items) == images.shape[0]

    if args.stage in ("vae", "all"):
        train_vae(run_dir, cfg, model, images, args.threads)
    if args.stage in ("latents", "diffusion", "all"):
        vae_ck = torch.load(os.path.join(run_dir, "vae.pt"))
        if vae_ck["step"] < cfg["train"]["vae_steps"]:
            sys.exit("the VAE stage is not finished")
        model.first_stage_model.load_state_dict(vae_ck["vae"])
        lat = encode_latents(run_dir, cfg, model, images)
    if args.stage in ("diffusion", "all"):
        ema = train_diffusion(run_dir, cfg, model, lat, items, tok)
        preview(run_dir, cfg, model, lat, tok, ema)
    print("done", flush=True)


if __name__ == "__main__":
    main()
