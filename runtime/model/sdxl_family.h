// The SDXL base family as data (sgm configs/inference/sd_xl_base.yaml, SDXL 1.0): what the
// tensors cannot tell. Everything shapes say (channels, levels, per-level transformer depth,
// context width, adm_in_channels, encoder widths and layers, the pooled width) is read off the
// checkpoint by Checkpoint's one architecture inference.
//
//   text      encoder 0: OpenAI CLIP ViT-L/14 (12 heads, quick-GELU, pads with the end token),
//             the penultimate layer's output without final_layer_norm ("hidden", layer_idx -2);
//             single file conditioner.embedders.0.transformer.text_model.* (HF names),
//             diffusers text_encoder/
//             encoder 1: OpenCLIP ViT-bigG/14 (20 heads, exact GELU, pads with 0), the
//             penultimate block's output without ln_final, and the pooled vector
//             ln_final(last)[first end token] @ text_projection (1280); single file
//             conditioner.embedders.1.model.* (open_clip names, fused in_proj), diffusers
//             text_encoder_2/ (CLIPTextModelWithProjection); both seen under HF names at
//             kSdxlClipGPrefix. Context = cat(768, 1280) = 2048.
//   vector y  pooled 1280 + 3 x 512 size embeddings (256 per number) = 2816
//   UNet      heads of 64 channels (the rest from the tensors: [0, 2, 10] depth, middle 10,
//             linear proj_in/proj_out, label_emb)
//   VAE       latent scale factor 0.13025
//   schedule  eps-prediction, scaled_linear 0.00085 .. 0.012, 1000 steps; sgm's sampler visits
//             t = 999, 999 - 1000/n, ... (trailing spacing) and starts from noise *
//             sqrt(1 + sigma_max^2); trained at 1024 x 1024
#pragma once

#include "runtime/model/model_config.h"

namespace vksd {

inline constexpr const char* kSdxlClipLPrefix = "conditioner.embedders.0.transformer.text_model.";
// The bigG tower under Hugging Face CLIPTextModel names (the file stores open_clip names at
// kSdxlOpenClipGPrefix; diffusers at text_encoder_2/): the name this loader gives it.
inline constexpr const char* kSdxlClipGPrefix = "conditioner.embedders.1.transformer.text_model.";
inline constexpr const char* kSdxlOpenClipGPrefix = "conditioner.embedders.1.model.";

// SDXL 1.0 base's defaults for everything shapes cannot tell.
void apply_sdxl_defaults(ModelConfig& cfg);

}  // namespace vksd
