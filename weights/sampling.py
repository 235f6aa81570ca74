"""Sampling with the PyTorch model (previews during training, the evaluation): LDM's DDIM with
classifier-free guidance, exactly as vksd implements it (see /work/shared/vectors/README.md):
timesteps range(0, 1000, 1000 // steps) + 1 visited in reverse, a_prev of the last step is
alphas_cumprod[0], eta = 0, eps = e_uncond + g (e_cond - e_uncond), x_T = randn (no sigma).
"""
import numpy as np
import torch

from sd_modules import make_schedule


def ddim_timesteps(steps, num_train_timesteps=1000):
    return np.arange(0, num_train_timesteps, num_train_timesteps // steps) + 1


@torch.no_grad()
def ddim_sample(model, ids, uncond_ids, x_T, steps=20, guidance=5.0):
    """`ids`, `uncond_ids`: [B, 77] token ids; x_T: [B, 4, h, w]. Returns the final latent."""
    unet = model.model.diffusion_model
    ac = torch.from_numpy(make_schedule()["alphas_cumprod"].astype(np.float32))
    cond = model.cond_stage_model(ids)
    uncond = model.cond_stage_model(uncond_ids)
    ctx = torch.cat([uncond, cond])
    ts = ddim_timesteps(steps)
    x = x_T
    for i in reversed(range(len(ts))):
        t = int(ts[i])
        a_t = ac[t]
        a_prev = ac[ts[i - 1]] if i > 0 else ac[0]
        tt = torch.full((2 * x.shape[0],), t, dtype=torch.long)
        e_u, e_c = unet(torch.cat([x, x]), tt, ctx).chunk(2)
        e = e_u + guidance * (e_c - e_u)
        pred_x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * e
    return x


@torch.no_grad()
def decode_to_u8(model, latent, scale_factor):
    """VAE decode of a diffusion-space latent -> uint8 [B, H, W, 3]
    (u8 = clamp((x+1)/2, 0, 1) * 255 + 0.5, truncated)."""
    img = model.first_stage_model.decode(latent / scale_factor)
    img = ((img.clamp(-1, 1) + 1) / 2 * 255 + 0.5).to(torch.uint8)
    return img.permute(0, 2, 3, 1).numpy()


def grid(images_u8, cols):
    """[N, H, W, 3] -> one [rows*H, cols*W, 3] image, white padding."""
    n, h, w, _ = images_u8.shape
    rows = (n + cols - 1) // cols
    out = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images_u8):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    return out


def lab_features(images_u8, size=16):
    """Prompt-following features: area-downsample to size x size, sRGB (D65) -> CIE Lab,
    flattened [N, size*size*3] float64."""
    x = images_u8.astype(np.float64) / 255.0
    n, h, w, _ = x.shape
    x = x.reshape(n, size, h // size, size, w // size, 3).mean(axis=(2, 4))
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = np.where(xyz > d ** 3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.reshape(n, -1)
