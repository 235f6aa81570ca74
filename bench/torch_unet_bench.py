#!/usr/bin/python3
"""PyTorch-CPU on the same UNet and checkpoint as `vksd bench` (its "torch" part runs this).

Builds weights/sd_modules.py's UNetModel with the architecture `vksd bench` passes (--unet, JSON
of the vksd UNet config), loads the checkpoint's model.diffusion_model.* weights into it (fp32,
strict: every key must match), then times one forward at [batch, in_channels, latent, latent]
with a 77-token context: a first run and --repeats more. The last line of output is one JSON
object: {"torch": version, "threads": n, "device": d, "dtype": t, "first_s": s, "runs_s": [s, ...]}.

Run with Debian's interpreter (python3-torch, OpenBLAS/oneDNN) for the CPU comparison; with
--device cuda --half it is the PyTorch-CUDA fp16 figure of the GPU check (scripts/device_check.sh).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "weights"))
from sd_modules import UNetModel  # noqa: E402
from st_io import read_safetensors  # noqa: E402

PREFIX = "model.diffusion_model."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--unet", required=True, help="vksd UNet config as JSON")
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--half", action="store_true", help="fp16 weights and activations")
    a = ap.parse_args()
    u = json.loads(a.unet)
    if u.get("num_head_channels", -1) > 0 or u.get("use_linear_in_transformer"):
        sys.exit("this UNet (SD 2.x style heads / linear projections) is not in weights/sd_modules.py")
    torch.set_num_threads(a.threads)
    unet = UNetModel(in_channels=u["in_channels"], out_channels=u["out_channels"], model_channels=u["model_channels"],
                     channel_mult=tuple(u["channel_mult"]), num_res_blocks=u["num_res_blocks"],
                     attention_levels=tuple(u["attention_levels"]), num_heads=u["num_heads"],
                     context_dim=u["context_dim"], transformer_depth=u["transformer_depth"]).eval()
    tensors, _ = read_safetensors(a.ckpt)
    sd = {k[len(PREFIX):]: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()
          if k.startswith(PREFIX)}
    del tensors
    unet.load_state_dict(sd, strict=True)
    del sd
    dtype = torch.float16 if a.half else torch.float32
    unet = unet.to(device=a.device, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, u["in_channels"], a.latent, a.latent, generator=g).to(a.device, dtype)
    t = torch.full((a.batch,), 500.0).to(a.device)
    ctx = torch.randn(a.batch, 77, u["context_dim"], generator=g).to(a.device, dtype)

    def sync():  # GPU work is asynchronous: time it to completion
        if a.device != "cpu":
            torch.cuda.synchronize()

    runs = []
    with torch.no_grad():
        t0 = time.perf_counter()
        unet(x, t, ctx)
        sync()
        first = time.perf_counter() - t0
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            unet(x, t, ctx)
            sync()
            runs.append(time.perf_counter() - t0)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "device": a.device,
                      "dtype": str(dtype).replace("torch.", ""), "first_s": first, "runs_s": runs}))


if __name__ == "__main__":
    main()
