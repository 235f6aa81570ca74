// Checkpoints with random weights in a real architecture's key layout: for benchmarks and tests
// at real Stable Diffusion sizes on machines that cannot download a model. Every tensor is drawn
// from its own deterministic stream (seeded by a hash of its name), so a tensor's values do not
// depend on which others are drawn, and scaled like a trained network's so that activations
// stay O(1) through every block: conv/linear weights uniform with variance 1/fan_in, norm gains
// 1 + 0.1u, biases 0.05u, token embeddings variance 1, position embeddings variance 1/4.
#pragma once
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "runtime/model/model_config.h"

namespace vksd {

// The values of the tensor `name` (full key, prefix included) of the given shape, in fp32.
std::vector<float> random_weight(const std::string& name, const Shape& shape);

// Writes every tensor of sd1_layout(cfg) with random_weight values, stored as `storage`
// (F16 or F32). The default ModelConfig is SD 1.5's architecture (about 2 GiB in F16).
void write_random_checkpoint(const ModelConfig& cfg, const std::string& path, DType storage);

}  // namespace vksd
