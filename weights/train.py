#!/usr/bin/python3
"""Train vksd's embedded demo model on CPU: a scaled-down Stable Diffusion 1.x (same
architecture family and parameter names, see sd_modules.py) on 64x64 emoji.

Stages (each resumable; a finished stage is skipped on rerun):
  vae        AutoencoderKL, 64x64x3 -> 4x8x8: L1 + L2 + image-gradient L1 (sharpness, no
             perceptual net) + a small KL term, on posterior samples as LDM trains it.
  latents    encode every training image once (posterior mean and log-variance) and fix the
             latent scale factor = 1 / std(latents) (LDM's scale_by_std).
  diffusion  CLIP text encoder + UNet trained jointly from scratch: eps-prediction, SD's
             scaled-linear schedule (0.00085..0.012, 1000 steps), uniform timesteps, 10%
             empty captions (classifier-free guidance), EMA of the weights.
  decoder    optional (--decoder-steps): fine-tune the VAE decoder on the fixed latents.

The vae and diffusion stages run data-parallel over --procs processes (one thread each: on
this 2-core machine two processes made the VAE stage 1.45x faster than one, while two threads
in one process are slower than one); a run's numbers do not depend on the process count.

Everything lives in weights/runs/<run>/: config.json, <stage>.pt checkpoints (weights, EMA,
optimizer and RNG states: a resumed run continues exactly), <stage>_losses.csv, preview PNGs.

Usage:
  OMP_NUM_THREADS=1 /usr/bin/python3 weights/train.py --run demo --procs 2   # the full run (README)
  /usr/bin/python3 weights/train.py --run smoke --vae-steps 20 --diffusion-steps 20
"""
import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import DEFAULT_VOCAB, ClipTokenizer  # noqa: E402
from sampling import ddim_sample, decode_to_u8, grid  # noqa: E402
from sd_modules import StableDiffusion, make_schedule  # noqa: E402

DATA = os.path.join(HERE, "data")
RUNS = os.path.join(HERE, "runs")

# The demo architecture. Channel counts are multiples of 32 (GroupNorm(32)).
ARCH = {
    # Latents 4x8x8 (f = 8, as SD): UNet levels at 8x8, 4x4, 2x2, attention on the first two
    # (SD also has none on its lowest level). f = 4 (16x16 latents) was tried first: ~2x the cost
    # per sample for the UNet, so far fewer epochs fit in the time budget (weights/README.md).
    "unet": {"model_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
             "attention_levels": [True, True, False], "num_heads": 2, "transformer_depth": 1},
    "vae": {"ch": 32, "ch_mult": [1, 2, 2, 2], "num_res_blocks": 1},
    "text_encoder": {"width": 128, "layers": 3, "heads": 2, "max_length": 77},
}
TRAIN = {
    "seed": 1234,
    "vae_steps": 3000, "vae_batch": 8, "vae_lr": 2e-4, "kl_weight": 1e-6, "grad_weight": 0.5,
    "diffusion_steps": 16000, "diffusion_batch": 32, "diffusion_lr": 3e-4, "warmup": 300,
    "weight_decay": 0.01, "ema_decay": 0.999, "uncond_prob": 0.1, "grad_clip": 1.0,
    "ckpt_every": 250,
    # Decoder fine-tuning after the latents are fixed (encoder frozen, so the diffusion stage's
    # latents stay valid): batch 8, AdamW with the VAE's lr, decoding posterior samples of the
    # stored latents. 0 = off.
    "decoder_steps": 2000,
    # Min-SNR-gamma loss weighting (Hang et al. 2023): eps-loss weight min(SNR, gamma) / SNR.
    # It down-weights the nearly noise-free timesteps (fine detail) so the coarse layout and the
    # prompt's colours - what the prompt-following test measures - are learned sooner. 0 = off.
    "min_snr_gamma": 0.0,
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


def set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


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


def save_checkpoint(path, step, opt, gen, **parts):
    """A stage's checkpoint: the parts' state dicts by name, optimizer, every RNG state, step."""
    save_atomic({**{k: v.state_dict() for k, v in parts.items()}, "opt": opt.state_dict(),
                 "rng": rng_state(gen), "step": step}, path)


def load_checkpoint(path, opt, gen, **parts):
    """Restores what save_checkpoint wrote, if the file exists; returns its step (0 if not)."""
    if not os.path.exists(path):
        return 0
    ck = torch.load(path, map_location="cpu")
    for k, v in parts.items():
        if k in ck:  # a weights-only checkpoint (train_device.py) has no EMA
            v.load_state_dict(ck[k])
    if "opt" in ck:  # ... nor optimizer and RNG states: the caller sees opt.state empty
        opt.load_state_dict(ck["opt"])
        set_rng_state(ck["rng"], gen)
    return ck["step"]


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


def recon_losses(rec, x):
    """L1, L2 and image-gradient L1 of a reconstruction (the VAE and decoder stages' loss terms)."""
    return (rec - x).abs().mean(), (rec - x).pow(2).mean(), grad_l1(rec, x)


@torch.no_grad()
def save_recon_preview(vae, images, latent_of, path):
    """Originals (top) and reconstructions (bottom) of 8 evenly spaced training images;
    latent_of(idx, x) gives the latents to decode."""
    vae.eval()
    idx = torch.arange(0, images.shape[0], max(1, images.shape[0] // 8))[:8]
    x = to_float(images[idx])
    rec = vae.decode(latent_of(idx, x))
    u8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    save_png(grid(np.concatenate([u8(x), u8(rec)]), 8), path)


def train_vae(run_dir, cfg, model, images, threads):
    tr = cfg["train"]
    vae = model.first_stage_model
    total = tr["vae_steps"]
    path = os.path.join(run_dir, "vae.pt")
    opt = torch.optim.AdamW(vae.parameters(), lr=tr["vae_lr"], weight_decay=0.0)
    gen = torch.Generator().manual_seed(tr["seed"] + 1)
    step = load_checkpoint(path, opt, gen, vae=vae)
    if step >= total:
        print(f"vae: done ({step} steps)")
        return
    rank, world = dist_info(tr["vae_batch"])
    say(f"vae: steps {step}..{total}, batch {tr['vae_batch']} on {world} process(es), "
        f"{sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M params")
    log = CsvLog(os.path.join(run_dir, "vae_losses.csv"),
                 ["step", "loss", "l1", "l2", "grad", "kl", "lr", "step_s", "cpu_s", "elapsed_s"], step) if rank == 0 else None
    n = images.shape[0]
    t_start = time.time()
    vae.train()
    while step < total:
        t0, c0 = time.time(), time.process_time()
        lr = set_lr(opt, cosine_lr(step, total, tr["vae_lr"], 100))
        idx = torch.randint(0, n, (tr["vae_batch"],), generator=gen)
        mine = slice(rank * len(idx) // world, (rank + 1) * len(idx) // world)  # this process's share
        x = to_float(images[idx[mine]])
        mean, logvar = vae.encode(x)
        eps = torch.randn((len(idx),) + mean.shape[1:], generator=gen)[mine]
        z = mean + eps * (0.5 * logvar).exp()
        rec = vae.decode(z)
        l1, l2, gl = recon_losses(rec, x)
        kl = kl_sum(mean, logvar).mean() / x[0].numel()  # per image pixel, as LDM's sum-losses
        loss = l1 + l2 + tr["grad_weight"] * gl + tr["kl_weight"] * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            loss = average_grads(list(vae.parameters()), loss.detach(), world)
        opt.step()
        step += 1
        if rank != 0:  # (l1, l2, grad, kl are logged for process 0's share of the batch)
            continue
        log.write({"step": step, "loss": loss.item(), "l1": l1.item(), "l2": l2.item(), "grad": gl.item(),
                   "kl": kl.item(), "lr": lr, "step_s": time.time() - t0, "cpu_s": time.process_time() - c0,
                   "elapsed_s": time.time() - t_start})
        if step % 50 == 0 or step == total:
            print(f"vae {step}/{total} loss {loss.item():.4f} l1 {l1.item():.4f} kl {kl.item():.3f} "
                  f"{time.time() - t0:.2f}s/step", flush=True)
        if step % tr["ckpt_every"] == 0 or step == total:
            save_checkpoint(path, step, opt, gen, vae=vae)
    if rank == 0:
        save_recon_preview(vae, images, lambda idx, x: vae.encode(x)[0], os.path.join(run_dir, f"vae_recon_{step}.png"))


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


# --------------------------------------------------------------------------- decoder fine-tune

def decoder_params(vae):
    return list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())


def train_decoder(run_dir, cfg, model, images, lat):
    """Fine-tunes the VAE decoder on posterior samples of the stored latents, the encoder frozen
    (as SD's ft-MSE VAE did): reconstructions get sharper and truer in colour while the latent
    space the diffusion stage learns stays exactly the same. Same loss as the VAE stage, minus KL."""
    tr = cfg["train"]
    total = tr.get("decoder_steps", 0)
    vae = model.first_stage_model
    path = os.path.join(run_dir, "decoder.pt")
    params = decoder_params(vae)
    opt = torch.optim.AdamW(params, lr=tr["vae_lr"], weight_decay=0.0)
    gen = torch.Generator().manual_seed(tr["seed"] + 5)
    step = load_checkpoint(path, opt, gen, vae=vae)
    if step >= total:
        print(f"decoder: done ({step} steps)")
        return
    print(f"decoder: steps {step}..{total}, batch {tr['vae_batch']}, "
          f"{sum(p.numel() for p in params) / 1e6:.2f}M params (encoder frozen)", flush=True)
    log = CsvLog(os.path.join(run_dir, "decoder_losses.csv"),
                 ["step", "loss", "l1", "l2", "grad", "lr", "step_s", "cpu_s", "elapsed_s"], step)
    mean, std = lat["mean"], (0.5 * lat["logvar"]).exp()
    n = images.shape[0]
    t_start = time.time()
    vae.train()
    while step < total:
        t0, c0 = time.time(), time.process_time()
        lr = set_lr(opt, cosine_lr(step, total, tr["vae_lr"], 100))
        idx = torch.randint(0, n, (tr["vae_batch"],), generator=gen)
        x = to_float(images[idx])
        z = mean[idx] + torch.randn(mean[idx].shape, generator=gen) * std[idx]
        rec = vae.decode(z)
        l1, l2, gl = recon_losses(rec, x)
        loss = l1 + l2 + tr["grad_weight"] * gl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        log.write({"step": step, "loss": loss.item(), "l1": l1.item(), "l2": l2.item(), "grad": gl.item(),
                   "lr": lr, "step_s": time.time() - t0, "cpu_s": time.process_time() - c0,
                   "elapsed_s": time.time() - t_start})
        if step % 50 == 0 or step == total:
            print(f"decoder {step}/{total} loss {loss.item():.4f} l1 {l1.item():.4f} "
                  f"{time.time() - t0:.2f}s/step", flush=True)
        if step % tr["ckpt_every"] == 0 or step == total:
            save_checkpoint(path, step, opt, gen, vae=vae)
    save_recon_preview(vae, images, lambda idx, x: mean[idx], os.path.join(run_dir, f"decoder_recon_{step}.png"))


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
        self.loaded = False  # set by load_state_dict

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))  # LDM's LitEma warm-up
        # foreach: one kernel per list on a GPU instead of two per tensor (same arithmetic)
        torch._foreach_mul_(self.shadow, d)
        torch._foreach_add_(self.shadow, [p.detach() for p in self.params], alpha=1 - d)

    def state_dict(self):
        return self.shadow

    def load_state_dict(self, s):
        for a, b in zip(self.shadow, s):
            a.copy_(b)
        self.loaded = True

    @torch.no_grad()
    def copy_to(self, params):
        for s, p in zip(self.shadow, params):
            p.copy_(s)


def diffusion_params(model):
    return list(model.cond_stage_model.parameters()) + list(model.model.diffusion_model.parameters())


def dist_info(batch):
    """(rank, world size) of this data-parallel process; (0, 1) without a process group."""
    if not dist.is_initialized():
        return 0, 1
    if batch % dist.get_world_size():
        sys.exit(f"batch {batch} is not divisible by {dist.get_world_size()} processes")
    return dist.get_rank(), dist.get_world_size()


def say(msg):
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(msg, flush=True)


def average_grads(params, loss, world):
    """All-reduce the gradients (and the loss, for the log) of a data-parallel step: one flat
    buffer, one collective. Returns the batch-mean loss."""
    grads = [p.grad for p in params]
    flat = torch.cat([g.flatten() for g in grads] + [loss.reshape(1)])
    dist.all_reduce(flat)
    flat /= world
    o = 0
    for g in grads:
        g.copy_(flat[o:o + g.numel()].view_as(g))
        o += g.numel()
    return flat[-1]


def stage_worker(rank, world, port, run_dir, cfg, threads, stage):
    """One data-parallel process of the vae or diffusion stage (gloo over localhost)."""
    try:  # stop with the parent (Linux): a killed `train.py` must not leave workers training
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(cfg["train"]["seed"])
    model = StableDiffusion(cfg)  # the same initial weights as a single-process run
    if stage == "vae":
        train_vae(run_dir, cfg, model, load_images(), threads)
        dist.barrier()
        dist.destroy_process_group()
        return
    lat = torch.load(os.path.join(run_dir, "latents.pt"))
    ema = train_diffusion(run_dir, cfg, model, lat, load_items(), ClipTokenizer(DEFAULT_VOCAB))
    if rank == 0:
        model.first_stage_model.load_state_dict(torch.load(os.path.join(run_dir, "vae.pt"))["vae"])
        preview(run_dir, cfg, model, lat, ClipTokenizer(DEFAULT_VOCAB), ema)
    dist.barrier()
    dist.destroy_process_group()


def train_diffusion(run_dir, cfg, model, lat, items, tok, device=torch.device("cpu"), seconds=None):
    """The diffusion stage, on `device` (CPU, or CUDA through train_device.py), for at most
    `seconds` of wall-clock time (then checkpointed; None = to the end). Batches are drawn on the
    CPU from the same RNG streams whatever the device."""
    tr = cfg["train"]
    total = tr["diffusion_steps"]
    path = os.path.join(run_dir, "diffusion.pt")
    unet, text = model.model.diffusion_model, model.cond_stage_model
    unet.to(device)
    text.to(device)
    params = diffusion_params(model)
    decay, no_decay = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tr["diffusion_lr"],
                            **({"fused": True} if device.type == "cuda" else {}))
    ema = Ema(params, tr["ema_decay"])
    gen = torch.Generator().manual_seed(tr["seed"] + 3)
    random.seed(tr["seed"] + 4)
    step = load_checkpoint(path, opt, gen, unet=unet, text=text, ema=ema)
    # A weights-only checkpoint (no optimizer state) is a warm restart: fresh Adam moments, so the
    # learning rate ramps up again over `warmup` steps; new RNG streams; without an EMA in it the
    # EMA restarts from the loaded weights (at decay 0.999 its start is forgotten within a few
    # thousand steps).
    restart = step if step > 0 and not opt.state else None
    if restart is not None and step < total:
        if not ema.loaded:
            ema.load_state_dict([p.detach() for p in params])
        gen.manual_seed(tr["seed"] + 3 + step)
        random.seed(tr["seed"] + 4 + step)
    if step >= total:
        print(f"diffusion: done ({step} steps)")
        return ema
    rank, world = dist_info(tr["diffusion_batch"])
    if seconds is not None and world > 1:
        sys.exit("a time budget (seconds) needs a single process: only process 0 would stop")
    n_unet = sum(p.numel() for p in unet.parameters())
    n_text = sum(p.numel() for p in text.parameters())
    say(f"diffusion: steps {step}..{total}, batch {tr['diffusion_batch']} on {world} process(es) ({device}), "
        f"UNet {n_unet / 1e6:.2f}M + text {n_text / 1e6:.2f}M params"
        + (f", warm restart at {restart}" if restart is not None else ""))
    ac = torch.from_numpy(make_schedule()["alphas_cumprod"].astype(np.float32)).to(device)
    scale = lat["scale_factor"]
    mean, std = lat["mean"], (0.5 * lat["logvar"]).exp()
    ids_cache = {}

    def ids_of(caption):
        if caption not in ids_cache:
            ids_cache[caption] = tok.ids77(caption)
        return ids_cache[caption]

    log = CsvLog(os.path.join(run_dir, "diffusion_losses.csv"),
                 ["step", "loss", "lr", "step_s", "cpu_s", "elapsed_s"], step) if rank == 0 else None
    n = mean.shape[0]
    t_start = time.time()
    unet.train()
    text.train()
    while step < total:
        t0, c0 = time.time(), time.process_time()
        lr = cosine_lr(step, total, tr["diffusion_lr"], tr["warmup"])
        if restart is not None:
            lr *= min(1.0, (step - restart + 1) / tr["warmup"])
        set_lr(opt, lr)
        b = tr["diffusion_batch"]
        idx = torch.randint(0, n, (b,), generator=gen)
        x0 = (mean[idx] + torch.randn(mean[idx].shape, generator=gen) * std[idx]) * scale
        caps = ["" if random.random() < tr["uncond_prob"] else training_caption(items[i]["parts"], random)
                for i in idx.tolist()]
        ids = torch.tensor([ids_of(c) for c in caps], dtype=torch.long)
        t = torch.randint(0, 1000, (b,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        # Every process draws the whole batch from the same RNG streams (so a run's numbers do not
        # depend on the process count) and computes its own slice of it.
        mine = slice(rank * b // world, (rank + 1) * b // world)
        x0, ids, t, noise = (v[mine].to(device, non_blocking=True) for v in (x0, ids, t, noise))
        a = ac[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        err = (unet(xt, t, text(ids)) - noise).pow(2).flatten(1).mean(1)
        gamma = tr.get("min_snr_gamma", 0.0)
        if gamma > 0:
            snr = a.flatten() / (1 - a.flatten())
            err = err * snr.clamp(max=gamma) / snr
        loss = err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            loss = average_grads(params, loss.detach(), world)
        torch.nn.utils.clip_grad_norm_(params, tr["grad_clip"])
        opt.step()
        ema.update(step)
        step += 1
        if rank != 0:
            continue
        log.write({"step": step, "loss": loss.item(), "lr": lr, "step_s": time.time() - t0,
                   "cpu_s": time.process_time() - c0, "elapsed_s": time.time() - t_start})
        if step % 50 == 0 or step == total:
            print(f"diffusion {step}/{total} loss {loss.item():.4f} lr {lr:.2e} {time.time() - t0:.2f}s/step", flush=True)
        out_of_time = seconds is not None and time.time() - t_start > seconds
        if step % tr["ckpt_every"] == 0 or step == total or out_of_time:
            save_checkpoint(path, step, opt, gen, unet=unet, text=text, ema=ema)
        if out_of_time:
            print(f"diffusion: stopped at {step}/{total} after {seconds} s", flush=True)
            break
    return ema


@torch.no_grad()
def preview(run_dir, cfg, model, lat, tok, ema):
    """EMA weights, DDIM 20 steps, guidance 5, seed 42: one image per preview prompt."""
    live = [p.detach().clone() for p in diffusion_params(model)]
    ema.copy_to(diffusion_params(model))
    model.eval()
    torch.manual_seed(42)
    x_T = torch.randn(len(PREVIEW_PROMPTS), *lat["mean"].shape[1:])
    ids = torch.tensor([tok.ids77(p) for p in PREVIEW_PROMPTS])
    un = torch.tensor([tok.ids77("")] * len(PREVIEW_PROMPTS))
    latent = ddim_sample(model, ids, un, x_T, steps=20, guidance=5.0)
    steps = cfg["train"]["diffusion_steps"]
    save_png(grid(decode_to_u8(model, latent, lat["scale_factor"]), 8), os.path.join(run_dir, f"samples_{steps}.png"))
    for p, v in zip(diffusion_params(model), live):
        p.copy_(v)


# ------------------------------------------------------------------------------------- main

def init_from(src, run_dir, args):
    """A new run continuing `src`: its config (diffusion_steps / diffusion_lr / decoder_steps may
    be overridden), VAE, decoder and latents copied, and a weights-only diffusion checkpoint (UNet,
    text encoder, EMA, step) - which train_diffusion resumes as a warm restart. The decoder
    checkpoint is copied whole: a longer decoder stage resumes it exactly, on the new total's
    cosine schedule."""
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    ck = torch.load(os.path.join(src, "diffusion.pt"), map_location="cpu")
    if ck["step"] < cfg["train"]["diffusion_steps"]:
        sys.exit(f"{src}: the diffusion stage is not finished ({ck['step']}/{cfg['train']['diffusion_steps']})")
    for k in ("diffusion_steps", "diffusion_lr", "decoder_steps"):
        if getattr(args, k) is not None:
            cfg["train"][k] = getattr(args, k)
    dec_step = torch.load(os.path.join(src, "decoder.pt"))["step"] if os.path.exists(os.path.join(src, "decoder.pt")) else 0
    if cfg["train"]["diffusion_steps"] < ck["step"] or cfg["train"]["decoder_steps"] < dec_step or \
            (cfg["train"]["diffusion_steps"] == ck["step"] and cfg["train"]["decoder_steps"] == dec_step):
        sys.exit(f"--init-from {src}: --diffusion-steps (at {ck['step']}) or --decoder-steps (at {dec_step}) "
                 "must grow, and neither may shrink")
    cfg["train"]["init_from"] = os.path.basename(src)
    for f in ("vae.pt", "decoder.pt", "latents.pt", "diffusion_losses.csv"):
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), run_dir)
    save_atomic({k: ck[k] for k in ("unet", "text", "ema", "step")}, os.path.join(run_dir, "diffusion.pt"))
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="demo", help="run name: weights/runs/<run>/")
    ap.add_argument("--stage", choices=["vae", "latents", "decoder", "diffusion", "all"], default="all",
                    help="vae -> latents -> decoder (fine-tune, encoder frozen) -> diffusion; "
                         "decoder and diffusion only read the latents, so they may run in parallel")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--procs", type=int, default=1,
                    help="data-parallel processes for the vae and diffusion stages (one per core is "
                         "fastest here); the result does not depend on it (up to float rounding)")
    ap.add_argument("--port", type=int, default=29517, help="localhost port of the process group")
    ap.add_argument("--vae-steps", type=int)
    ap.add_argument("--diffusion-steps", type=int)
    ap.add_argument("--ckpt-every", type=int)
    ap.add_argument("--diffusion-lr", type=float)
    ap.add_argument("--min-snr-gamma", type=float)
    ap.add_argument("--decoder-steps", type=int)
    ap.add_argument("--init-from", metavar="RUN",
                    help="start a new run from a finished run's VAE, latents and diffusion weights "
                         "(with its EMA): the diffusion stage continues to --diffusion-steps as a warm "
                         "restart (fresh optimizer, lr re-warmed, the cosine schedule of the new total); "
                         "the decoder stage continues to --decoder-steps")
    ap.add_argument("--arch", action="append", default=[], metavar="NET.KEY=JSON",
                    help="architecture override for a new run, e.g. vae.ch_mult=[1,2,2,2] (f = 8)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    run_dir = os.path.join(RUNS, args.run)
    os.makedirs(run_dir, exist_ok=True)
    tok = ClipTokenizer(DEFAULT_VOCAB)
    cfg_path = os.path.join(run_dir, "config.json")
    if args.init_from and not os.path.exists(cfg_path):
        init_from(os.path.join(RUNS, args.init_from), run_dir, args)
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
        for a in args.arch:
            key, _, value = a.partition("=")
            net, _, field = key.partition(".")
            if net not in cfg or field not in cfg[net]:
                sys.exit(f"--arch {a}: no such architecture field (have: "
                         f"{', '.join(n + '.' + f for n in cfg for f in cfg[n])})")
            cfg[net][field] = json.loads(value)
        cfg["train"] = dict(TRAIN)
        for k in ("vae_steps", "diffusion_steps", "ckpt_every", "diffusion_lr", "min_snr_gamma", "decoder_steps"):
            if getattr(args, k) is not None:
                cfg["train"][k] = getattr(args, k)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=1)
    if args.decoder_steps is not None and not os.path.exists(os.path.join(run_dir, "decoder.pt")):
        # The decoder stage only reads the fixed latents: it can be added to (or re-sized in) a
        # run until it has started.
        cfg["train"]["decoder_steps"] = args.decoder_steps
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=1)
    for k in ("vae_steps", "diffusion_steps", "diffusion_lr", "min_snr_gamma", "decoder_steps"):
        if getattr(args, k) is not None and getattr(args, k) != cfg["train"].get(k):
            sys.exit(f"{cfg_path} says {k} = {cfg['train'][k]}; start a new --run to change it")
    if args.arch and any(json.dumps(cfg[k.partition(".")[0]][k.partition(".")[2].partition("=")[0]])
                         != json.dumps(json.loads(k.partition("=")[2])) for k in args.arch):
        sys.exit(f"{cfg_path} has a different architecture; start a new --run to change it")
    print(f"run {run_dir}: {json.dumps(cfg)}", flush=True)

    torch.manual_seed(cfg["train"]["seed"])
    model = StableDiffusion(cfg)
    images = load_images()
    items = load_items()
    assert len(items) == images.shape[0]

    if args.stage in ("vae", "all") and args.procs > 1:
        mp.spawn(stage_worker, args=(args.procs, args.port, run_dir, cfg, args.threads, "vae"), nprocs=args.procs)
    elif args.stage in ("vae", "all"):
        train_vae(run_dir, cfg, model, images, args.threads)
    if args.stage in ("latents", "decoder", "diffusion", "all"):
        vae_ck = torch.load(os.path.join(run_dir, "vae.pt"))
        if vae_ck["step"] < cfg["train"]["vae_steps"]:
            sys.exit("the VAE stage is not finished")
        model.first_stage_model.load_state_dict(vae_ck["vae"])
        lat = encode_latents(run_dir, cfg, model, images)
    if args.stage in ("decoder", "all"):
        train_decoder(run_dir, cfg, model, images, lat)
    if args.stage in ("diffusion", "all") and args.procs > 1:
        mp.spawn(stage_worker, args=(args.procs, args.port, run_dir, cfg, args.threads, "diffusion"),
                 nprocs=args.procs)
    elif args.stage in ("diffusion", "all"):
        ema = train_diffusion(run_dir, cfg, model, lat, items, tok)
        preview(run_dir, cfg, model, lat, tok, ema)
    print("done", flush=True)


if __name__ == "__main__":
    main()
