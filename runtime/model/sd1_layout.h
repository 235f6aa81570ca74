// The tensors an SD 1.x checkpoint must hold, in the ORIGINAL single-file key layout, derived
// from a ModelConfig by walking the published architectures (LDM openaimodel.UNetModel,
// LDM AutoencoderKL Encoder/Decoder, Hugging Face CLIPTextModel). The checkpoint loader checks
// a file against this list (missing, unexpected and wrongly shaped tensors are errors), and the
// parameter counts of `vksd info` are sums over it.
#pragma once
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "runtime/model/model_config.h"
#include "runtime/model/network_prefixes.h"

namespace vksd {


struct TensorSpec {
  std::string name;  // full original name, prefix included
  Shape shape;
};

std::vector<TensorSpec> unet_layout(const UNetConfig& c);
std::vector<TensorSpec> vae_layout(const VaeConfig& c);
std::vector<TensorSpec> clip_layout(const ClipConfig& c);
std::vector<TensorSpec> sd1_layout(const ModelConfig& c);  // all three

int64_t parameter_count(const std::vector<TensorSpec>& specs);

}  // namespace vksd
