#include "runtime/diffusion/precision_plan.h"

namespace vksd {

PrecisionPlan precision_plan(const ModelConfig& cfg, DType compute, bool vae_fp16) {
  PrecisionPlan p;
  p.text = {compute, compute, ""};
  p.unet = {compute, compute, ""};
  p.vae = {compute, compute, ""};
  if (compute == DType::F16 && cfg.vae.fp32_activations && !vae_fp16)
    p.vae = {DType::F16, DType::F32,
             "this VAE's activations exceed fp16's range; --vae-fp16 for an fp16-fixed VAE"};
  return p;
}

std::string describe(const NetPrecision& p) {
  std::string r = std::string("weights ") + dtype_name(p.weights) + ", activations " + dtype_name(p.activations);
  if (!p.why.empty()) r += " (" + p.why + ")";
  return r;
}

}  // namespace vksd
