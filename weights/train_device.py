#!/usr/bin/python3
"""Continue a run's diffusion stage on a CUDA machine that has PyTorch but not the data set, then
bring the weights back. For the device tool of this workplace, whose transfers carry at most
64 MiB to the machine and 16 MiB per file back:

  pack    (here)   weights/runs/<run>/device/: config, latents, vocabulary, captions and a
                   weights-only checkpoint (UNet + text encoder, fp32, no optimizer state: with
                   it the pack would not fit). Carry that folder.
  train   (there)  train.train_diffusion on cuda from that checkpoint - a warm restart (fresh
                   Adam moments with the lr re-warmed, EMA restarted from the weights) - for at
                   most --seconds; writes the weights and EMA to --out in chunks under 15 MB.
  unpack  (here)   chunks -> weights/runs/<run>/diffusion.pt (weights-only, with the EMA), and the
                   device's loss log appended to the run's.

Usage:
  /usr/bin/python3 weights/train_device.py pack --run f8
  python3 weights/train_device.py train --run f8 --out $OUT --seconds 300      # on the device
  /usr/bin/python3 weights/train_device.py unpack --run f8 --from /work/.device/.../files
"""
import argparse
import csv
import glob
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402
from bpe import ClipTokenizer  # noqa: E402
from sd_modules import StableDiffusion  # noqa: E402

CHUNK_BYTES = 15_000_000


def pack(run_dir):
    dev = os.path.join(run_dir, "device")
    os.makedirs(dev, exist_ok=True)
    ck = torch.load(os.path.join(run_dir, "diffusion.pt"))
    torch.save({"unet": ck["unet"], "text": ck["text"], "step": ck["step"]}, os.path.join(dev, "diffusion.pt"))
    for f in ("config.json", "latents.pt"):
        shutil.copy(os.path.join(run_dir, f), dev)
    for f in ("emoji64.json", os.path.basename(train.DEFAULT_VOCAB)):
        shutil.copy(os.path.join(train.DATA, f), dev)
    print(f"{dev}: step {ck['step']}, {sum(os.path.getsize(os.path.join(dev, f)) for f in os.listdir(dev)) / 1e6:.1f} MB")


def save_chunks(named, out):
    """[(key, tensor)] -> out/weights_<i>.pt, each under CHUNK_BYTES."""
    chunks, cur, size = [], [], 0
    for k, v in named:
        nb = v.numel() * v.element_size()
        if cur and size + nb > CHUNK_BYTES:
            chunks.append(cur)
            cur, size = [], 0
        cur.append((k, v.detach().cpu().clone()))
        size += nb
    chunks.append(cur)
    for i, c in enumerate(chunks):
        torch.save(dict(c), os.path.join(out, f"weights_{i}.pt"))


def train_there(run_dir, out, seconds, device):
    dev = os.path.join(run_dir, "device")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    with open(os.path.join(dev, "config.json")) as f:
        cfg = json.load(f)
    train.DATA = dev  # load_items reads the captions from the pack
    torch.manual_seed(cfg["train"]["seed"])
    model = StableDiffusion(cfg)
    lat = torch.load(os.path.join(dev, "latents.pt"))
    tok = ClipTokenizer(os.path.join(dev, os.path.basename(train.DEFAULT_VOCAB)))
    if device.type == "cuda":
        print(torch.cuda.get_device_name(), flush=True)
    ema = train.train_diffusion(dev, cfg, model, lat, train.load_items(), tok, device, seconds)
    ck = torch.load(os.path.join(dev, "diffusion.pt"), map_location="cpu")
    named = [("step", torch.tensor(ck["step"]))]
    named += [(f"unet.{k}", v) for k, v in ck["unet"].items()]
    named += [(f"text.{k}", v) for k, v in ck["text"].items()]
    named += [(f"ema.{i}", v) for i, v in enumerate(ema.state_dict())]
    save_chunks(named, out)
    if os.path.exists(os.path.join(dev, "diffusion_losses.csv")):  # absent if nothing was left to train
        shutil.copy(os.path.join(dev, "diffusion_losses.csv"), out)
    print(f"saved step {ck['step']} to {out}", flush=True)


def unpack(run_dir, src):
    named = {}
    for f in sorted(glob.glob(os.path.join(src, "weights_*.pt"))):
        named.update(torch.load(f))
    if "step" not in named:
        sys.exit(f"{src}: no weights_*.pt chunks")
    step = int(named["step"])
    ck = {"step": step,
          "unet": {k[5:]: v for k, v in named.items() if k.startswith("unet.")},
          "text": {k[5:]: v for k, v in named.items() if k.startswith("text.")},
          "ema": [named[f"ema.{i}"] for i in range(sum(k.startswith("ema.") for k in named))]}
    train.save_atomic(ck, os.path.join(run_dir, "diffusion.pt"))
    if not os.path.exists(os.path.join(src, "diffusion_losses.csv")):
        print(f"{run_dir}/diffusion.pt: step {step} (no steps were trained there)")
        return
    with open(os.path.join(src, "diffusion_losses.csv"), newline="") as f:
        r = csv.DictReader(f)
        fields, dev_rows = r.fieldnames, list(r)
    start = int(dev_rows[0]["step"]) - 1
    log = train.CsvLog(os.path.join(run_dir, "diffusion_losses.csv"), fields, start)  # keeps rows <= start
    for row in dev_rows:
        log.write(row)
    print(f"{run_dir}/diffusion.pt: step {step} (device rows {start + 1}..{dev_rows[-1]['step']})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["pack", "train", "unpack"])
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", help="train: where the chunks go")
    ap.add_argument("--seconds", type=float, help="train: wall-clock budget")
    ap.add_argument("--device", default="cuda", help="train: cuda (cpu to try the script here)")
    ap.add_argument("--from", dest="src", help="unpack: the fetched chunks' folder")
    a = ap.parse_args()
    run_dir = os.path.join(train.RUNS, a.run)
    if a.what == "pack":
        pack(run_dir)
    elif a.what == "train":
        train_there(run_dir, a.out, a.seconds, torch.device(a.device))
    else:
        unpack(run_dir, a.src)


if __name__ == "__main__":
    main()
