// In which precision each network stores its weights and its activations, decided in one place
// from the run's compute precision (the device's fp16, or --fp32) and the model's data, so that
// the pipeline, the memory estimate and `vksd info` agree.
//
// Arithmetic is fp32 in every shader; "activations" is the storage type of the tensors between
// dispatches. fp16 activations halve activation memory but saturate above 65504. SDXL's VAE
// with its released weights goes past that in the decoder's up blocks (inf, then NaN: a black
// image), so a VAE whose config says fp32_activations (the SDXL family's data) keeps fp32
// activations while its weights stay fp16, unless the user passes --vae-fp16 for a VAE
// fine-tuned to stay in range (an "fp16-fix" VAE).
#pragma once
#include <string>

#include "runtime/gpu/dtype.h"
#include "runtime/model/model_config.h"

namespace vksd {

struct NetPrecision {
  DType weights = DType::F16, activations = DType::F16;
  std::string why;  // why the activations differ from the weights ("" when they do not)
};

struct PrecisionPlan {
  NetPrecision text, unet, vae;
};

// `compute`: the run's precision (F32 with --fp32, else the device's compute dtype).
// `vae_fp16`: the user's --vae-fp16 (trust the VAE with fp16 activations).
PrecisionPlan precision_plan(const ModelConfig& cfg, DType compute, bool vae_fp16);

// "weights f16, activations f32 (why)" for `vksd info` and --verbose.
std::string describe(const NetPrecision& p);

}  // namespace vksd
