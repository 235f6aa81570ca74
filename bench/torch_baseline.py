#!/usr/bin/python3
"""PyTorch on the same CPU, 2 threads: the reference points for bench/RESULTS.md.

Run with Debian's interpreter (python3-torch): /usr/bin/python3 bench/torch_baseline.py
Prints median milliseconds and GFLOP/s after warm-up, fp32, and like vksd_bench the GFLOP/s
per CPU-second of this process x 2 cores (comparable when other load shares the machine).
"""
import time

import torch


def bench(name, fn, flops, reps=5):
    for _ in range(2):
        fn()
    ts = []
    cpu0 = time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / reps
    ms = sorted(ts)[len(ts) // 2] * 1e3
    print(f"| torch {name} | {ms:.2f} | {flops / (ms * 1e6):.1f} | {flops / (cpu / 2 * 1e9):.1f} |")


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| op | ms | GFLOP/s | GFLOP/s per CPU time |")
    with torch.no_grad():
        a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
        bench("matmul 1024^3", lambda: a @ b, 2.0 * 1024**3)
        x = torch.randn(1, 320, 64, 64)
        conv = torch.nn.Conv2d(320, 320, 3, padding=1)
        bench("conv3x3 320->320 @64x64", lambda: conv(x), 2.0 * 320 * 320 * 9 * 64 * 64)


if __name__ == "__main__":
    main()
