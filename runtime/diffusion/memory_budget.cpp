#include "runtime/diffusion/memory_budget.h"

#include <algorithm>
#include <cstdlib>

#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/sd1_layout.h"

namespace vksd {

static std::string mib(uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB"; }

std::string MemoryEstimate::describe() const {
  return "weights " + mib(weights) + " + activations (text " + mib(text) + ", UNet " + mib(unet) + ", VAE " + mib(vae) + ")";
}

uint64_t memory_budget_bytes(const Context& ctx, uint64_t override_mb) {
  if (override_mb > 0) return override_mb << 20;
  if (const char* e = std::getenv("VKSD_MEMORY_BUDGET_MB"); e && *e) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(e, &end, 10);
    if (*end || v == 0 || v > (1ull << 40)) fail(std::string("VKSD_MEMORY_BUDGET_MB must be a positive number of MiB (got '") + e + "')");
    return (uint64_t)v << 20;
  }
  uint64_t best = 0;
  for (auto [size, local] : ctx.info().heaps)
    if (local) best = std::max(best, size);
  return best ? best : UINT64_MAX;
}

void require_memory_budget(const MemoryEstimate& est, uint64_t budget, bool lowvram, bool vae_tiled) {
  if (est.peak <= budget) return;
  std::string hint;
  if (!lowvram) hint += " --lowvram (one network on the GPU at a time),";
  if (!vae_tiled) hint += " --vae-tiling (the VAE decodes in tiles),";
  hint += " or a smaller width/height";
  fail("this run needs about " + mib(est.peak) + " of device memory (" + est.describe() + ") but the budget is " +
       mib(budget) + "; try" + hint);
}

MemoryEstimate SdPipeline::memory_estimate(const GenerateParams& p) const {
  const ModelConfig& c = config();
  const uint64_t bs = dtype_ == DType::F16 ? 2 : 4;
  MemoryEstimate e;
  // Weights, exact per network.
  uint64_t w_text = 0, w_unet = 0, w_vae = 0;
  for (const std::string& name : ckpt_->tensor_names()) {
    uint64_t n = 1;
    for (int64_t d : ckpt_->shape(name)) n *= (uint64_t)d;
    if (name.rfind(kUNetPrefix, 0) == 0) w_unet += n * bs;
    else if (name.rfind(kVaePrefix, 0) == 0) w_vae += n * bs;
    else w_text += n * bs;
  }
  e.weights = opts_.lowvram ? std::max({w_text, w_unet, w_vae}) : w_text + w_unet + w_vae;

  const int f = c.vae.downsample_factor();
  const uint64_t lh = (uint64_t)std::max(1, p.height / f), lw = (uint64_t)std::max(1, p.width / f);
  const uint64_t batch = p.cfg_scale != 1.0 ? 2 : 1;
  // Text: a few [77 x mlp] activations per chunk (chunks from the prompt length, at most 64).
  const uint64_t chunks = std::min<uint64_t>(64, 1 + p.prompt.size() / 300);
  e.text = chunks * 77 * (uint64_t)(c.clip.width * 6 + c.clip.mlp_dim * 2) * bs;
  // UNet: every input block's output is kept for its skip connection; at level 0 a transformer
  // block also holds q, k, v, the attention output, the GEGLU input (8 x C) and the residuals.
  const auto& u = c.unet;
  uint64_t skip = 0;  // channel x pixels, summed over the input blocks
  uint64_t hw = lh * lw;
  skip += (uint64_t)u.model_channels * hw;  // conv_in
  for (size_t l = 0; l < u.channel_mult.size(); ++l) {
    const uint64_t ch = (uint64_t)u.model_channels * u.channel_mult[l];
    skip += ch * hw * (uint64_t)u.num_res_blocks;
    if (l + 1 < u.channel_mult.size()) hw = std::max<uint64_t>(1, hw / 4), skip += ch * hw;  // downsample
  }
  const uint64_t work = (uint64_t)u.model_channels * lh * lw * 14 + 77 * chunks * (uint64_t)u.context_dim * 4;
  e.unet = batch * (skip + work) * bs + batch * (uint64_t)u.in_channels * lh * lw * 4 * 4;
  // VAE decoder at full resolution: input, two convolution outputs and the skip of a ResBlock at
  // level 0's width, plus the upsampled level-1 tensor; tiled, of one tile.
  const auto& v = c.vae;
  uint64_t vh = (uint64_t)p.height, vw = (uint64_t)p.width;
  if (vae_tiled(p.width, p.height)) vh = vw = (uint64_t)opts_.vae_tile * f;
  const uint64_t c0 = (uint64_t)v.ch * v.ch_mult.front(), c1 = (uint64_t)v.ch * v.ch_mult[std::min<size_t>(1, v.ch_mult.size() - 1)];
  e.vae = vh * vw * (3 * c0 + 2 * c1) * bs;
  // Peak: with lowvram one network (and its arena) at a time, else everything resident.
  if (opts_.lowvram)
    e.peak = std::max({w_text + e.text, w_unet + e.unet, w_vae + e.vae});
  else
    e.peak = e.weights + e.text + e.unet + e.vae;
  return e;
}

}  // namespace vksd
