// Which model family a checkpoint is, decided from its tensor names (and, for diffusers folders,
// model_index.json and the text encoder's config.json), and what that family implies for the
// values shapes cannot tell. vksd runs:
//   SD 1.x  cond_stage_model.transformer.* (OpenAI CLIP ViT-L/14, Hugging Face names): context
//           768, 8 UNet heads, 1x1-conv proj_in/proj_out, quick-GELU, pads with the end token;
//   SD 2.x  cond_stage_model.model.* (OpenCLIP ViT-H/14, open_clip names): context 1024, UNet
//           heads of 64 channels (num_head_channels), linear proj_in/proj_out, exact GELU, the
//           penultimate layer through ln_final, pads with 0; 512 eps or 768 v-prediction.
//   SDXL    conditioner.embedders.0.transformer.* (CLIP ViT-L) + conditioner.embedders.1.model.*
//           (OpenCLIP ViT-bigG) + model.diffusion_model.label_emb.* (model/sdxl_family.h)
// Everything else that looks like a diffusion checkpoint is refused with a message naming what
// it is (SDXL refiner, SD unCLIP, SD3, Flux, Stable Cascade, PixArt, DiT, a LoRA file).
#pragma once
#include <string>
#include <vector>

#include "runtime/model/model_config.h"

namespace vksd {

const char* model_family_name(ModelFamily f);  // "SD 1.x", "SD 2.x"
// The text encoder a family conditions on, for `vksd info` and messages.
const char* text_encoder_kind(ModelFamily f);

// The family of a single safetensors file from its tensor names; an Error naming the family
// (and `path`) for files of a family vksd does not run, or that mix two families' text encoders.
ModelFamily single_file_family(const std::vector<std::string>& keys, const std::string& path);


// The family of a diffusers folder (model_index.json's _class_name, the text encoder's
// hidden_act; "" = file absent); Error for pipelines vksd does not run.
ModelFamily diffusers_family(const std::string& pipeline_class, const std::string& text_encoder_act,
                             bool has_second_text_encoder, const std::string& path);

// The family's defaults for what shapes cannot tell (heads, activation, padding, head width).
void apply_family_defaults(ModelConfig& cfg, ModelFamily f);

}  // namespace vksd
