// The tensors an SD checkpoint must hold, in the ORIGINAL single-file key layout, derived from a
// ModelConfig by a dry run of the networks' own builders (runtime/nn: UNet, VAE, text encoder)
// on a shapes-only Graph: every weight a builder binds is recorded with the shape it states, so
// the layout is the code that runs, not a second description of it. No Vulkan device is needed.
// The checkpoint loader checks a file against this list (missing, unexpected and wrongly shaped
// tensors are errors), and the parameter counts of `vksd info` are sums over it.
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

// In the order the network uses them; defined beside each builder (runtime/nn/unet.cpp, vae.cpp,
// text_encoder.cpp). The text encoder's list holds every layer of the checkpoint, also those
// the model skips (ClipConfig::skip_last_layers).
std::vector<TensorSpec> unet_layout(const UNetConfig& c);
std::vector<TensorSpec> vae_layout(const VaeConfig& c);
std::vector<TensorSpec> clip_layout(const ClipConfig& c);
std::vector<TensorSpec> sd1_layout(const ModelConfig& c);  // all three

int64_t parameter_count(const std::vector<TensorSpec>& specs);

}  // namespace vksd
