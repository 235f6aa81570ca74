// What a Stable Diffusion 1.x / 2.x checkpoint is: the hyper-parameters of its three networks and
// its noise schedule. Most of it is read off the tensors' shapes (channels, levels, blocks,
// context width); what shapes cannot tell (head counts, norm eps, schedule, prediction type)
// comes from the family's defaults (model_family.h; the defaults below are SD 1.x's) or from a
// vksd model config JSON beside the checkpoint (format: docs/model-config.md).
#pragma once
#include <string>
#include <vector>

#include "runtime/diffusion/preview.h"
#include "runtime/model/network_prefixes.h"

namespace vksd {

// CLIP ViT-L/14 text transformer as used by SD 1.x (Hugging Face CLIPTextModel names).
struct ClipConfig {
  int vocab_size = 49408;
  int max_length = 77;       // context length (position embeddings)
  int width = 768;           // hidden size
  int layers = 12;
  int heads = 12;
  int mlp_dim = 3072;
  float ln_eps = 1e-5f;
  bool quick_gelu = true;    // CLIP's x*sigmoid(1.702x); false = exact erf GELU
  int bos_token = 49406, eos_token = 49407, pad_token = 49407;
  // Layers at the end of the stored tower that the model does not use: SD 2.x conditions on the
  // penultimate layer (then the final LayerNorm), and its single files hold the whole OpenCLIP
  // tower (1); diffusers folders store the tower already cut (0). clip_skip counts on top.
  int skip_last_layers = 0;
  int used_layers() const { return layers - skip_last_layers; }
  // What the UNet's context is made of: the output of layer used_layers() - clip_skip -
  // context_skip (SDXL: 1, the penultimate), through final_layer_norm when `final_norm` (SD 1.x /
  // 2.x; SDXL's encoders give the raw hidden state).
  int context_skip = 0;
  bool final_norm = true;
  // > 0: the encoder also gives a pooled vector of this width for the UNet's y (SDXL's bigG):
  // final_layer_norm(last layer)[first end token] @ text_projection [width, pooled_dim].
  int pooled_dim = 0;
  // Where the encoder's weights live in the checkpoint's canonical names (Hugging Face
  // CLIPTextModel names under this prefix; the text projection is prefix + "text_projection").
  std::string prefix = kClipPrefix;
  // Where a single file stores the tower under open_clip's names (fused in_proj; mapped to
  // `prefix` at load by model/openclip_keys.h), "" = Hugging Face names only; and how many of
  // that stored tower's last layers the model does not use (SD 2.x: 1).
  std::string openclip_prefix;
  int openclip_unused_layers = 0;
  int context_layer(int clip_skip) const { return used_layers() - clip_skip - context_skip; }
};

// The LDM UNetModel (openaimodel.py) with SpatialTransformer cross-attention.
struct UNetConfig {
  int in_channels = 4;                     // 9 for the inpainting UNet
  int out_channels = 4;
  int model_channels = 320;
  std::vector<int> channel_mult = {1, 2, 4, 4};
  int num_res_blocks = 2;
  // Per level: does it carry SpatialTransformers (SD 1.x: all but the deepest; SDXL: not the first)?
  std::vector<bool> attention_levels = {true, true, true, false};
  int num_heads = 8;                       // heads per SpatialTransformer (dim_head = ch / heads)
  int num_head_channels = -1;              // if > 0: fixed dim_head, heads = ch / dim_head (SD 2.x style)
  // BasicTransformerBlocks per SpatialTransformer: `transformer_depth` at every level (SD 1.x /
  // 2.x: 1), unless `transformer_depths` gives one per level (SDXL base: {1, 2, 10}, as the
  // reference's transformer_depth list; a level without attention ignores its entry). The middle
  // block's: transformer_depth_middle, -1 = the deepest level's (the reference's default).
  int transformer_depth = 1;
  std::vector<int> transformer_depths;
  int transformer_depth_middle = -1;
  // Width of the vector input y (the reference's adm_in_channels; SDXL: pooled text + size
  // embeddings = 2816): label_emb = Linear -> SiLU -> Linear, added to the time embedding.
  // 0 = no y input (SD 1.x / 2.x).
  int adm_in_channels = 0;
  int context_dim = 768;
  bool use_linear_in_transformer = false;  // proj_in/out as linear (SD 2.x) instead of 1x1 conv
  float gn_eps = 1e-5f;                    // GroupNorm(32) eps
  float ln_eps = 1e-5f;                    // LayerNorm eps inside transformer blocks
  int time_embed_dim() const { return model_channels * 4; }
  int heads_for(int channels) const { return num_head_channels > 0 ? channels / num_head_channels : num_heads; }
  // Transformer blocks in each SpatialTransformer of `level` (0 where it has none) and of the middle block.
  int depth_at(int level) const {
    if (!attention_levels[level]) return 0;
    return transformer_depths.empty() ? transformer_depth : transformer_depths[level];
  }
  int middle_depth() const {
    if (transformer_depth_middle >= 0) return transformer_depth_middle;
    return transformer_depths.empty() ? transformer_depth : transformer_depths.back();
  }
};

// AutoencoderKL (first_stage_model): Encoder, Decoder, quant_conv/post_quant_conv.
struct VaeConfig {
  int in_channels = 3, out_channels = 3;
  int ch = 128;
  std::vector<int> ch_mult = {1, 2, 4, 4};
  int num_res_blocks = 2;                  // encoder; the decoder uses num_res_blocks + 1 per level
  int z_channels = 4;
  int embed_dim = 4;                       // latent channels
  float gn_eps = 1e-6f;
  float scale_factor = 0.18215f;           // latent = scale_factor * posterior sample
  // The trained weights drive activations past fp16's range (SDXL's VAE: decoder up-block values
  // above 65504 -> inf -> NaN -> a black image): the VAE keeps fp32 activations (its weights may
  // stay fp16) unless the user says the VAE is an fp16-fixed one (--vae-fp16).
  // runtime/diffusion/precision_plan.h decides; model config key "vae.fp32_activations".
  bool fp32_activations = false;
  int downsample_factor() const { return 1 << (int)(ch_mult.size() - 1); }
};

// The DDPM training schedule the model was trained with.
struct ScheduleConfig {
  int num_train_timesteps = 1000;
  double beta_start = 0.00085, beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  // "scaled_linear" (LDM "linear" in sqrt space) or "linear"
  std::string prediction_type = "epsilon";      // "epsilon" or "v_prediction"
  // Which timesteps a run of n steps visits by default: "" (each sampler's reference choice),
  // "leading", "trailing" (few-step distilled models such as SD-Turbo) or "linspace"; and
  // diffusers' steps_offset, added to "leading" timesteps (SD 1.x's scheduler config says 1).
  std::string timestep_spacing;
  int steps_offset = 0;
  // The pure-noise start of the sigma samplers (euler, dpm++, ...): "sigma" = noise * sigma_max
  // (k-diffusion, A1111), "sqrt_sigma2_plus_1" = noise * sqrt(1 + sigma_max^2) (sgm, SDXL's
  // reference sampler; diffusers' EulerDiscreteScheduler with leading spacing).
  std::string init_noise = "sigma";
};

// The model families vksd runs (runtime/model/model_family.h decides which one a checkpoint is
// and names the ones it refuses).
enum class ModelFamily { SD1, SD2, SDXL };

struct ModelConfig {
  std::string name;      // for messages and PNG metadata
  ModelFamily family = ModelFamily::SD1;
  // Default image width and height in pixels (`vksd generate` without -W/-H): the resolution
  // the model was trained at. SD 1.x: 512; the embedded demo model: 64.
  int sample_size = 512;
  // The tokenizer vocabulary the text encoder was trained with, from the model config's
  // "tokenizer": {"vocab": FILE} (FILE relative to the config file), as a usable path;
  // "" = none named (find_vocabulary searches beside the model, then VKSD_VOCAB).
  std::string tokenizer_vocab;
  // The text encoder(s). SD 1.x / 2.x: `clip` alone. Models with several (SDXL: CLIP ViT-L, then
  // OpenCLIP bigG) list the further ones in `more_text_encoders`: the UNet's cross-attention
  // context is every encoder's output concatenated along the feature axis, in this order
  // (text_encoders()), so unet.context_dim = the sum of their widths.
  ClipConfig clip;
  std::vector<ClipConfig> more_text_encoders;
  std::vector<ClipConfig> text_encoders() const {
    std::vector<ClipConfig> r{clip};
    r.insert(r.end(), more_text_encoders.begin(), more_text_encoders.end());
    return r;
  }
  size_t text_encoder_count() const { return 1 + more_text_encoders.size(); }
  ClipConfig& text_encoder(size_t i) { return i == 0 ? clip : more_text_encoders.at(i - 1); }
  const ClipConfig& text_encoder(size_t i) const { return i == 0 ? clip : more_text_encoders.at(i - 1); }
  int pooled_width() const {
    int w = 0;
    for (const ClipConfig& c : text_encoders()) w += c.pooled_dim;
    return w;
  }
  int context_width() const {
    int w = 0;
    for (const ClipConfig& c : text_encoders()) w += c.width;
    return w;
  }
  // SDXL's micro-conditioning: the UNet's y ends with the Fourier embeddings (this many values
  // per number) of original size, crop top-left and target size (diffusion/
  // sdxl_size_conditioning.h); 0 = none. y = every encoder's pooled vector, then these.
  int size_embed_dim = 0;
  // With guidance and an empty negative prompt, the unconditional branch's text (context and
  // pooled) is all zeros instead of the empty prompt's encoding (SDXL: sgm's
  // force_uc_zero_embeddings=["txt"], diffusers' force_zeros_for_empty_prompt).
  bool force_zeros_for_empty_prompt = false;
  UNetConfig unet;
  VaeConfig vae;
  ScheduleConfig schedule;
  // The linear latent -> RGB map for step previews (its VAE's colours to first order), from
  // the model config's "preview" section; SD 1.x's by default. `vksd fit-preview` fits one.
  LatentRgbMap preview = LatentRgbMap::sd1();
};

}  // namespace vksd
