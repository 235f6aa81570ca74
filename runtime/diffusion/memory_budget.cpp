#include "runtime/diffusion/memory_budget.h"

#include <algorithm>
#include <cstdlib>

#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/pipeline_nets.h"
#include "runtime/diffusion/precision_plan.h"
#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/staging.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/sd1_layout.h"

namespace vksd {

static std::string mib(uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB"; }

std::string MemoryEstimate::describe() const {
  return "weights " + mib(weights) + " + activations (text " + mib(text) + ", UNet " + mib(unet) + ", VAE " + mib(vae) + ")";
}

std::string MemoryEstimate::describe_stages() const {
  return "text " + mib(text_stage) + ", UNet " + mib(unet_stage) + ", VAE " + mib(vae_stage);
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
  std::string advice;
  if (est.weights > budget && lowvram) {
    // No option shrinks the weights themselves: say so rather than suggest tiling.
    advice = ": the largest network's weights alone exceed it, so no setting fits; use a device with more memory, or "
             "--memory-budget MB if this one has more than its heap reports";
  } else if (est.weights > budget) {
    advice = "; try --lowvram (one network on the GPU at a time)";
  } else {
    advice = "; try";
    if (!lowvram) advice += " --lowvram (one network on the GPU at a time),";
    if (!vae_tiled) advice += " --vae-tiling (the VAE decodes in tiles),";
    advice += " or a smaller width/height";
  }
  fail("this run needs about " + mib(est.peak) + " of device memory" + (lowvram ? " with one network at a time" : "") + " (" +
       est.describe() + ") but the budget is " + mib(budget) + advice);
}

void SdPipeline::fit_memory_budget(const GenerateParams& p, Observer* obs) {
  const uint64_t budget = memory_budget_bytes(ctx_, opts_.memory_budget_mb);
  const MemoryEstimate est = memory_estimate(p);
  if (est.peak <= budget || lowvram_ || !opts_.auto_lowvram) {
    require_memory_budget(est, budget, lowvram_, vae_tiled(p.width, p.height));
    return;
  }
  const MemoryEstimate low = memory_estimate(p, /*lowvram=*/true);
  require_memory_budget(low, budget, true, vae_tiled(p.width, p.height, /*lowvram=*/true));
  lowvram_ = true;
  release_all();  // what an earlier, smaller run left resident
  if (obs)
    obs->on_notice("the three networks together need about " + mib(est.peak) + " of device memory but the budget is " +
                   mib(budget) + ": switched to --lowvram (one network on the GPU at a time, about " + mib(low.peak) +
                   ") for this model");
}

MemoryEstimate estimate_memory(const ModelConfig& c, const PrecisionPlan& prec, const MemoryQuery& q) {
  MemoryEstimate e;
  e.weights = q.lowvram ? std::max({q.text_weights, q.unet_weights, q.vae_weights})
                        : q.text_weights + q.unet_weights + q.vae_weights;
  const int f = c.vae.downsample_factor();
  const uint64_t lh = (uint64_t)std::max(1, q.height / f), lw = (uint64_t)std::max(1, q.width / f);
  const uint64_t batch = (uint64_t)std::max(1, q.batch);
  // Text: a few [77 x mlp] activations per chunk (chunks from the prompt length, at most 64), for
  // every text encoder (SDXL runs two, one after the other; counted together).
  const uint64_t chunks = std::min<uint64_t>(64, 1 + q.prompt_bytes / 300);
  const uint64_t tb = dtype_size(prec.text.activations);
  for (const ClipConfig& t : c.text_encoders()) e.text += chunks * 77 * (uint64_t)(t.width * 6 + t.mlp_dim * 2) * tb;
  // UNet: every input block's output is kept for its skip connection; at level 0 a transformer
  // block also holds q, k, v, the attention output, the GEGLU input (8 x C) and the residuals
  // (an upper bound for SDXL, whose first transformer level has twice the channels and a
  // quarter of the pixels). Attention is flash-style: no [tokens x tokens] scores.
  const auto& u = c.unet;
  const uint64_t ub = dtype_size(prec.unet.activations);
  uint64_t skip = 0;  // channel x pixels, summed over the input blocks
  uint64_t hw = lh * lw;
  skip += (uint64_t)u.model_channels * hw;  // conv_in
  for (size_t l = 0; l < u.channel_mult.size(); ++l) {
    const uint64_t ch = (uint64_t)u.model_channels * u.channel_mult[l];
    skip += ch * hw * (uint64_t)u.num_res_blocks;
    if (l + 1 < u.channel_mult.size()) hw = std::max<uint64_t>(1, hw / 4), skip += ch * hw;  // downsample
  }
  const uint64_t work = (uint64_t)u.model_channels * lh * lw * 14 + 77 * chunks * (uint64_t)u.context_dim * 4;
  e.unet = batch * (skip + work) * ub + batch * (uint64_t)u.in_channels * lh * lw * 4 * 4;
  // VAE decoder at full resolution: input, two convolution outputs and the skip of a ResBlock at
  // level 0's width, plus the upsampled level-1 tensor; tiled, of one tile. In the VAE's own
  // activation precision (fp32 for a VAE that overflows fp16: precision_plan.h).
  const auto& v = c.vae;
  uint64_t vh = (uint64_t)q.height, vw = (uint64_t)q.width;
  if (q.vae_tile_pixels > 0) vh = vw = (uint64_t)q.vae_tile_pixels;
  const uint64_t c0 = (uint64_t)v.ch * v.ch_mult.front(), c1 = (uint64_t)v.ch * v.ch_mult[std::min<size_t>(1, v.ch_mult.size() - 1)];
  e.vae = vh * vw * (3 * c0 + 2 * c1) * dtype_size(prec.vae.activations);
  // Loading a network also holds its staging slots (runtime/gpu/staging.h) until it is on the
  // device; while it runs, the one small slot for latents and timesteps stays.
  auto staging = [](uint64_t w) {
    return (uint64_t)StagingRing::kSlots * StagingRing::batch_slot_bytes(w) + StagingRing::kSmallSlotBytes;
  };
  e.text_stage = q.text_weights + e.text + staging(q.text_weights);
  e.unet_stage = q.unet_weights + e.unet + staging(q.unet_weights);
  e.vae_stage = q.vae_weights + e.vae + staging(q.vae_weights);
  // Peak: with lowvram one network (and its arena) at a time, else everything resident.
  if (q.lowvram)
    e.peak = std::max({e.text_stage, e.unet_stage, e.vae_stage});
  else
    // The networks' intermediates share one arena (ScratchArena), the size of the largest; a
    // network's staging slots are freed once it is loaded: at most one load's slots at a time.
    e.peak = e.weights + std::max({e.text, e.unet, e.vae}) +
             std::max({staging(q.text_weights), staging(q.unet_weights), staging(q.vae_weights)});
  return e;
}

MemoryEstimate SdPipeline::memory_estimate(const GenerateParams& p, bool lowvram) const {
  const ModelConfig& c = config();
  const PrecisionPlan prec = precision();
  MemoryQuery q;
  // Weights, exact per network, in each network's weight precision.
  uint64_t largest = 0, encoder = 0;
  for (const std::string& name : ckpt_->tensor_names()) {
    uint64_t n = 1;
    for (int64_t d : ckpt_->shape(name)) n *= (uint64_t)d;
    largest = std::max<uint64_t>(largest, n * 4);  // fp32 bytes: an upper bound of any upload of it
    if (name.rfind(kUNetPrefix, 0) == 0) q.unet_weights += n * dtype_size(prec.unet.weights);
    else if (name.rfind(kVaePrefix, 0) == 0) (has_prefix(name, kVaeEncoderPrefixes) ? encoder : q.vae_weights) += n * dtype_size(prec.vae.weights);
    else q.text_weights += n * dtype_size(prec.text.weights);
  }
  // The VAE's encoder half is on the device only for an init image (or since an earlier one).
  if (p.init_image || nets_->vae_enc_w) q.vae_weights += encoder;
  q.largest_tensor = largest;
  q.width = p.width, q.height = p.height;
  q.batch = p.cfg_scale != 1.0 ? 2 : 1;
  q.prompt_bytes = p.prompt.size();
  q.lowvram = lowvram;
  if (vae_tiled(p.width, p.height, lowvram)) q.vae_tile_pixels = opts_.vae_tile * c.vae.downsample_factor();
  return estimate_memory(c, prec, q);
}

}  // namespace vksd
