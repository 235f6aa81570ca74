#!/usr/bin/python3
"""Check sd_modules.py against the ORIGINAL SD 1.x reference code: load the tiny random-weight
checkpoint in /work/shared/vectors/tiny (made by CompVis LDM + OpenAI CLIP) into our modules
with strict key/shape matching, and compare every network output with the reference vectors.

Usage: /usr/bin/python3 weights/check_modules.py [vectors_dir]
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sd_modules import StableDiffusion, make_schedule  # noqa: E402
from st_io import read_safetensors  # noqa: E402


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main():
    torch.set_num_threads(1)
    vec = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/vectors/tiny"
    tensors, meta = read_safetensors(os.path.join(vec, "model.safetensors"))
    tc = json.loads(meta["config"])
    cfg = {
        "unet": {"model_channels": tc["unet"]["model_channels"], "channel_mult": tc["unet"]["channel_mult"],
                 "num_res_blocks": tc["unet"]["num_res_blocks"],
                 "attention_levels": [2 ** i in tc["unet"]["attention_resolutions"] for i in range(len(tc["unet"]["channel_mult"]))],
                 "num_heads": tc["unet"]["num_heads"]},
        "vae": {"ch": tc["vae"]["ddconfig"]["ch"], "ch_mult": tc["vae"]["ddconfig"]["ch_mult"],
                "num_res_blocks": tc["vae"]["ddconfig"]["num_res_blocks"]},
        "text_encoder": {"vocab_size": tc["text"]["vocab_size"], "width": tc["text"]["width"],
                         "layers": tc["text"]["layers"], "heads": tc["text"]["heads"]},
    }
    model = StableDiffusion(cfg).eval()
    sd = model.state_dict()
    schedule = make_schedule()
    ref_keys = set(tensors)
    ours = set(sd) | set(schedule)
    assert ref_keys == ours, f"key sets differ: only ref {sorted(ref_keys - ours)[:5]}, only ours {sorted(ours - ref_keys)[:5]}"
    for k, v in sd.items():
        assert tuple(v.shape) == tensors[k].shape, (k, v.shape, tensors[k].shape)
    model.load_state_dict({k: torch.from_numpy(tensors[k].copy()) for k in sd}, strict=True)
    worst = {}
    for k, v in schedule.items():
        worst[f"schedule {k}"] = rel_l2(v.astype(np.float32), tensors[k])

    def ld(name):
        return np.load(os.path.join(vec, name + ".npy"))

    with torch.no_grad():
        text = model.cond_stage_model(torch.from_numpy(ld("tokens").astype(np.int64))).numpy()
        worst["text_hidden"] = rel_l2(text, ld("text_hidden"))
        unet = model.model.diffusion_model
        ctx = torch.from_numpy(ld("text_hidden"))
        worst["unet_eps"] = rel_l2(unet(torch.from_numpy(ld("unet_x")), torch.tensor([500]), ctx[0:1]).numpy(), ld("unet_eps"))
        worst["unet_eps_t777p5"] = rel_l2(unet(torch.from_numpy(ld("unet_x")), torch.tensor([777.5]), ctx[0:1]).numpy(), ld("unet_eps_t777p5"))
        worst["unet_batch_eps"] = rel_l2(unet(torch.from_numpy(ld("unet_batch_x")), torch.from_numpy(ld("unet_batch_t")), ctx[1:3]).numpy(), ld("unet_batch_eps"))
        vae = model.first_stage_model
        worst["vae_dec_out"] = rel_l2(vae.decode(torch.from_numpy(ld("vae_dec_in")) / 0.18215).numpy(), ld("vae_dec_out"))
        mean, logvar = vae.encode(torch.from_numpy(ld("vae_enc_in")))
        worst["vae_enc_mean"] = rel_l2(mean.numpy(), ld("vae_enc_mean"))
        worst["vae_enc_logvar"] = rel_l2(logvar.numpy(), ld("vae_enc_logvar"))
    bad = 0
    for k, e in worst.items():
        ok = e <= 1e-5
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {k:40s} rel L2 {e:.2e}")
    print(f"{len(sd)} tensors match the reference key layout and shapes; {'ALL OK' if not bad else f'{bad} FAILED'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
