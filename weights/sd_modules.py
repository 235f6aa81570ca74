"""Stable Diffusion 1.x networks, written from the published architectures, with the ORIGINAL
single-file checkpoint's parameter names, so that `StableDiffusion().state_dict()` already is an
SD 1.x checkpoint (only the sizes differ):

  model.diffusion_model.*                    LDM openaimodel.UNetModel with SpatialTransformers
  first_stage_model.*                        LDM AutoencoderKL (Encoder, Decoder, quant convs)
  cond_stage_model.transformer.text_model.*  Hugging Face CLIPTextModel (CLIP text transformer)

Numerics follow the originals: GroupNorm(32) with eps 1e-5 in the UNet's ResBlocks and out,
eps 1e-6 in SpatialTransformer.norm and everywhere in the VAE; LayerNorm eps 1e-5; GEGLU with
exact (erf) GELU; CLIP's quick-GELU; VAE downsampling pads (0,1,0,1) then a stride-2 conv.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def gn(channels, eps):
    return nn.GroupNorm(32, channels, eps=eps)


# ================================================================================== UNet (LDM)

def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal embedding [cos | sin] of (possibly fractional) timesteps, as LDM computes it."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, out_channels):
        super().__init__()
        self.in_layers = nn.Sequential(gn(channels, 1e-5), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(gn(out_channels, 1e-5), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)  # LDM zero_module: the block starts as identity
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape
        h = self.heads
        q = self.to_q(x).view(b, n, h, -1).transpose(1, 2)
        k = self.to_k(context).view(b, context.shape[1], h, -1).transpose(1, 2)
        v = self.to_v(context).view(b, context.shape[1], h, -1).transpose(1, 2)
        w = torch.softmax((q @ k.transpose(-1, -2)) * self.scale, dim=-1)
        return self.to_out((w @ v).transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, channels, heads, dim_head, context_dim, depth=1):
        super().__init__()
        inner = heads * dim_head
        self.norm = gn(channels, 1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dim_head, context_dim)
                                                 for _ in range(depth)])
        self.proj_out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.proj_out.weight)  # zero_module, as LDM
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, context):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x))
        h = h.flatten(2).transpose(1, 2)
        for blk in self.transformer_blocks:
            h = blk(h, context)
        h = h.transpose(1, 2).reshape(b, -1, hh, ww)
        return self.proj_out(h) + x


class Downsample(nn.Module):  # UNet: conv 3x3 stride 2 pad 1
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):  # nearest x2, conv 3x3
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb, context):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """LDM UNetModel, use_spatial_transformer=True, legacy=False, fixed num_heads per level."""

    def __init__(self, in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4),
                 num_res_blocks=2, attention_levels=(True, True, True, False), num_heads=8,
                 context_dim=768, transformer_depth=1):
        super().__init__()
        te = model_channels * 4
        self.model_channels = model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, te), nn.SiLU(), nn.Linear(te, te))

        def transformer(ch):
            return SpatialTransformer(ch, num_heads, ch // num_heads, context_dim, transformer_depth)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans, ch = [model_channels], model_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, te, mult * model_channels)]
                ch = mult * model_channels
                if attention_levels[level]:
                    layers.append(transformer(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, te, ch), transformer(ch), ResBlock(ch, te, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), te, model_channels * mult)]
                ch = model_channels * mult
                if attention_levels[level]:
                    layers.append(transformer(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(gn(ch, 1e-5), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x, t, context):
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        hs, h = [], x
        for blk in self.input_blocks:
            h = blk(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)


# ========================================================================= AutoencoderKL (LDM)

class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.norm1 = gn(in_channels, 1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = gn(out_channels, 1e-6)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels with 1x1-conv projections."""

    def __init__(self, channels):
        super().__init__()
        self.norm = gn(channels, 1e-6)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).flatten(2).transpose(1, 2)       # b, hw, c
        k = self.k(h).flatten(2)                       # b, c, hw
        v = self.v(h).flatten(2)                       # b, c, hw
        w = torch.softmax((q @ k) * c ** -0.5, dim=2)  # b, hw(query), hw(key)
        h = (v @ w.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class VaeDownsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric: LDM's choice, kept for parity


class Level(nn.Module):  # one resolution of the Encoder (down.N) / Decoder (up.N)
    pass


class Mid(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(ch, ch), AttnBlock(ch), ResnetBlock(ch, ch)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, in_channels, z_channels):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(ch_mult):
            lvl = Level()
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()  # attn_resolutions = [] as in SD
            for _ in range(num_res_blocks):
                lvl.block.append(ResnetBlock(block_in, ch * mult))
                block_in = ch * mult
            if i != len(ch_mult) - 1:
                lvl.downsample = VaeDownsample(block_in)
            self.down.append(lvl)
        self.mid = Mid(block_in)
        self.norm_out = gn(block_in, 1e-6)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for blk in lvl.block:
                h = blk(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, out_channels, z_channels):
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = Mid(block_in)
        up = []
        for i in reversed(range(len(ch_mult))):
            lvl = Level()
            lvl.block = nn.ModuleList()
            lvl.attn = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                lvl.block.append(ResnetBlock(block_in, ch * ch_mult[i]))
                block_in = ch * ch_mult[i]
            if i != 0:
                lvl.upsample = Upsample(block_in)
            up.insert(0, lvl)
        self.up = nn.ModuleList(up)
        self.norm_out = gn(block_in, 1e-6)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for lvl in reversed(self.up):
            for blk in lvl.block:
                h = blk(h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4, embed_dim=4):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, 3, z_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, 3, z_channels)
        self.quant_conv = nn.Conv2d(2 * z_channels, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def encode(self, x):
        """Posterior mean and log-variance (clamped to [-30, 20] as LDM's DiagonalGaussian)."""
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ===================================================================== CLIP text (Hugging Face)

class CLIPAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x, mask):
        b, n, d = x.shape
        h = self.heads
        q = (self.q_proj(x) * (d // h) ** -0.5).view(b, n, h, -1).transpose(1, 2)
        k = self.k_proj(x).view(b, n, h, -1).transpose(1, 2)
        v = self.v_proj(x).view(b, n, h, -1).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, width, mlp_dim):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, mlp_dim), nn.Linear(mlp_dim, width)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class CLIPEncoderLayer(nn.Module):
    def __init__(self, width, heads, mlp_dim):
        super().__init__()
        self.self_attn = CLIPAttention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width)
        self.mlp = CLIPMLP(width, mlp_dim)
        self.layer_norm2 = nn.LayerNorm(width)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEmbeddings(nn.Module):
    def __init__(self, vocab_size, width, max_length):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(max_length, width)
        self.register_buffer("position_ids", torch.arange(max_length).unsqueeze(0))

    def forward(self, ids):
        return self.token_embedding(ids) + self.position_embedding(self.position_ids[:, :ids.shape[1]])


class CLIPEncoder(nn.Module):
    def __init__(self, width, layers, heads, mlp_dim):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(width, heads, mlp_dim) for _ in range(layers)])


class CLIPTextTransformer(nn.Module):
    """Output: last_hidden_state after final_layer_norm (what SD 1.x cross-attends to)."""

    def __init__(self, vocab_size, width, layers, heads, max_length=77, mlp_dim=None):
        super().__init__()
        self.embeddings = CLIPEmbeddings(vocab_size, width, max_length)
        self.encoder = CLIPEncoder(width, layers, heads, mlp_dim or 4 * width)
        self.final_layer_norm = nn.LayerNorm(width)
        # As CLIP's initialisation (token embedding std 0.02, positions 0.01).
        nn.init.normal_(self.embeddings.token_embedding.weight, std=0.02)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.01)

    def forward(self, ids):
        n = ids.shape[1]
        mask = torch.full((n, n), float("-inf"), device=ids.device).triu(1)  # causal
        x = self.embeddings(ids)
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)


class CLIPTextModel(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.text_model = CLIPTextTransformer(**kw)

    def forward(self, ids):
        return self.text_model(ids)


class FrozenCLIPEmbedder(nn.Module):  # SD's cond_stage_model wrapper: .transformer is the CLIP model
    def __init__(self, **kw):
        super().__init__()
        self.transformer = CLIPTextModel(**kw)

    def forward(self, ids):
        return self.transformer(ids)


# ============================================================================ the whole model

class DiffusionWrapper(nn.Module):  # LDM: model.diffusion_model
    def __init__(self, unet):
        super().__init__()
        self.diffusion_model = unet


class StableDiffusion(nn.Module):
    """Top-level names as LatentDiffusion: model.diffusion_model, first_stage_model,
    cond_stage_model. `cfg` is the dict stored in weights/runs/<run>/config.json."""

    def __init__(self, cfg):
        super().__init__()
        u, v, t = cfg["unet"], cfg["vae"], cfg["text_encoder"]
        self.model = DiffusionWrapper(UNetModel(
            model_channels=u["model_channels"], channel_mult=tuple(u["channel_mult"]),
            num_res_blocks=u["num_res_blocks"], attention_levels=tuple(u["attention_levels"]),
            num_heads=u["num_heads"], context_dim=t["width"], transformer_depth=u.get("transformer_depth", 1)))
        self.first_stage_model = AutoencoderKL(ch=v["ch"], ch_mult=tuple(v["ch_mult"]),
                                               num_res_blocks=v["num_res_blocks"])
        self.cond_stage_model = FrozenCLIPEmbedder(vocab_size=t["vocab_size"], width=t["width"],
                                                   layers=t["layers"], heads=t["heads"],
                                                   max_length=t.get("max_length", 77))


def make_schedule(num_timesteps=1000, linear_start=0.00085, linear_end=0.012):
    """LDM register_schedule ('linear' in sqrt space, = diffusers 'scaled_linear'), float64, and
    the buffers the original single-file checkpoints store (as float32)."""
    import numpy as np
    betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, num_timesteps, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)  # v_posterior = 0
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    }
