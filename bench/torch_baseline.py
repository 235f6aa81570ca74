#!/usr/bin/python3
"""PyTorch on the same device as vksd_bench: the reference points for bench/RESULTS.md.

Run with Debian's interpreter (python3-torch): /usr/bin/python3 bench/torch_baseline.py
Prints median milliseconds and GFLOP/s after warm-up, fp32, and like vksd_bench the GFLOP/s
per CPU-second of this process x 2 cores (comparable when other load shares the machine).

--device cuda [--dtype float16]: the same ops through cuBLAS / cuDNN on an NVIDIA GPU (the best
GEMM that device can do, for the GPU rows), timed with a synchronize after each run.
"""
import argparse
import time

import torch


def bench(name, fn, flops, reps=5):
    sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else (lambda: None)
    for _ in range(2):
        fn()
    sync()
    ts = []
    cpu0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / reps
    ms = sorted(ts)[len(ts) // 2] * 1e3
    print(f"| torch {name} | {ms:.2f} | {flops / (ms * 1e6):.1f} | {flops / (cpu / 2 * 1e9):.1f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    dev, dt = torch.device(a.device), getattr(torch, a.dtype)
    reps = 5 if dev.type == "cpu" else 50
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {dev} {a.dtype}"
          + (f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else ""))
    print("| op | ms | GFLOP/s | GFLOP/s per CPU time |")
    with torch.no_grad():
        a, b = torch.randn(1024, 1024, device=dev, dtype=dt), torch.randn(1024, 1024, device=dev, dtype=dt)
        bench("matmul 1024^3", lambda: a @ b, 2.0 * 1024**3, reps)
        if dev.type == "cuda":
            a4, b4 = torch.randn(4096, 4096, device=dev, dtype=dt), torch.randn(4096, 4096, device=dev, dtype=dt)
            bench("matmul 4096^3", lambda: a4 @ b4, 2.0 * 4096**3, reps)
            q = torch.randn(1, 8, 4096, 40, device=dev, dtype=dt)
            sdpa = torch.nn.functional.scaled_dot_product_attention
            bench("self-attention 8h x 4096 x 40 (SDPA)", lambda: sdpa(q, q, q), 4.0 * 8 * 4096 * 4096 * 40, reps)
        x = torch.randn(1, 320, 64, 64, device=dev, dtype=dt)
        conv = torch.nn.Conv2d(320, 320, 3, padding=1).to(dev, dt)
        bench("conv3x3 320->320 @64x64", lambda: conv(x), 2.0 * 320 * 320 * 9 * 64 * 64, reps)


if __name__ == "__main__":
    main()
