// An SDXL base single file with random weights (as random_checkpoint.h for SD 1.5): the exact
// tensor names and shapes of sd_xl_base_1.0.safetensors -- the UNet (model.diffusion_model.*,
// 2.57 B parameters), the VAE (first_stage_model.*), CLIP ViT-L under
// conditioner.embedders.0.transformer.* (Hugging Face names) and OpenCLIP ViT-bigG under
// conditioner.embedders.1.model.* (open_clip names, fused attn.in_proj, text_projection) -- so
// that memory and speed at SDXL's real size can be measured without downloading a model. About
// 6.5 GiB in fp16. The values are random_weight()'s; the images are noise.
#pragma once
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "runtime/model/model_config.h"
#include "runtime/model/sd1_layout.h"

namespace vksd {

// The SDXL base architecture (sd_xl_base.yaml) as a ModelConfig: UNet, VAE (scale 0.13025),
// both text encoders (whole stored towers). Architecture only: the family's runtime defaults
// (which layer feeds the context, precision) are the loader's.
ModelConfig sdxl_base_architecture();

// Every tensor of an SDXL base single file, in a fixed order.
std::vector<TensorSpec> sdxl_single_file_layout(const ModelConfig& sdxl);

void write_random_sdxl_checkpoint(const std::string& path, DType storage);

}  // namespace vksd
