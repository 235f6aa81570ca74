#!/usr/bin/python3
"""One UNet step of SD 1.5 in PyTorch on the CPU: the reference for `vksd_bench step --sd15`.

Run with Debian's interpreter (python3-torch, OpenBLAS): /usr/bin/python3 bench/torch_unet_step.py
The UNet of weights/sd_modules.py with its default (SD 1.5) architecture and random weights,
fp32, batch 1, latent 4x32x32 (256x256 images), context 1x77x768, 2 threads. Prints each
forward's wall and CPU seconds and the medians; CPU time is this process's (all threads), so
on a shared machine "CPU s / 2" estimates the time with both cores to itself.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights"))
from sd_modules import UNetModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    unet = UNetModel().eval()
    x = torch.randn(a.batch, 4, a.latent, a.latent)
    t = torch.full((a.batch,), 500.0)
    ctx = torch.randn(a.batch, 77, 768)
    walls, cpus = [], []
    with torch.no_grad():
        unet(x, t, ctx)  # warm-up
        for _ in range(a.reps):
            w0, c0 = time.perf_counter(), time.process_time()
            unet(x, t, ctx)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            print(f"torch UNet forward: {walls[-1]:.3f} s wall, {cpus[-1]:.3f} s CPU", flush=True)
    walls.sort()
    cpus.sort()
    print(f"torch {torch.__version__} SD1.5 UNet batch {a.batch} latent {a.latent}: median {walls[len(walls) // 2]:.3f} s wall, "
          f"{cpus[len(cpus) // 2]:.3f} s CPU (CPU/2 = {cpus[len(cpus) // 2] / 2:.3f} s), min {walls[0]:.3f} s wall")


if __name__ == "__main__":
    main()
