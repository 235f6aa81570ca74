#include "cli/memory_info.h"

#include <cstdio>
#include <string>

#include "runtime/diffusion/memory_budget.h"
#include "runtime/diffusion/precision_plan.h"
#include "runtime/model/model_config.h"

namespace vksd::cli {

void print_precision_and_memory(const ModelConfig& cfg, const NetBytes& w) {
  const PrecisionPlan d = precision_plan(cfg, DType::F16, false);
  std::printf("\nprecision  (fp16 device; arithmetic always fp32; --fp32: everything f32)\n");
  std::printf("  text encoder  %s\n  UNet          %s\n  VAE           %s\n", describe(d.text).c_str(),
              describe(d.unet).c_str(), describe(d.vae).c_str());

  // The estimate generate refuses runs by (memory_budget.h), for text to image at the model's
  // own image size with guidance (UNet batch 2) and a short prompt.
  MemoryQuery q;
  q.text_weights = w.text, q.unet_weights = w.unet, q.vae_weights = w.vae;
  q.width = q.height = cfg.sample_size;
  q.batch = 2;
  const MemoryEstimate all = estimate_memory(cfg, d, q);
  q.lowvram = true;
  q.vae_tile_pixels = 64 * cfg.vae.downsample_factor();  // --lowvram tiles the VAE (default tile)
  if (q.vae_tile_pixels >= cfg.sample_size) q.vae_tile_pixels = 0;
  const MemoryEstimate low = estimate_memory(cfg, d, q);
  auto mib = [](uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB"; };
  std::printf("\nmemory     estimated device memory for text to image at %dx%d, fp16, with guidance:\n", cfg.sample_size, cfg.sample_size);
  std::printf("  all resident  %s (%s)\n", mib(all.peak).c_str(), all.describe().c_str());
  std::printf("  --lowvram     %s = the largest stage; per stage: %s%s\n", mib(low.peak).c_str(),
              low.describe_stages().c_str(), q.vae_tile_pixels ? " (VAE tiled)" : "");
}

}  // namespace vksd::cli
