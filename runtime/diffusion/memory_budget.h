// Device memory a generation will need, estimated before anything is uploaded, so that a run
// too big for the GPU is refused up front with advice (--lowvram, VAE tiling, a smaller image)
// instead of failing inside the driver minutes later.
//
// The estimate is weights (exact: every network tensor's element count x the device dtype size)
// plus the activation arena the networks share (ScratchArena: the largest network's; an upper
// estimate of each from the architecture: the UNet's
// skip connections at every level plus the level-0 working set of a transformer block, the VAE's
// full-resolution working set, per image of the batch). tests/test_hardening.cpp checks it
// against the memory a real run holds.
#pragma once
#include <cstdint>
#include <string>

namespace vksd {

class Context;

struct PrecisionPlan;
struct ModelConfig;

struct MemoryEstimate {
  uint64_t weights = 0;      // resident at once (all three networks, or the largest with lowvram)
  uint64_t text = 0, unet = 0, vae = 0;  // activations of each network (they share one arena)
  // Each stage alone: its network's weights + its arena (with lowvram, the peak is the largest).
  uint64_t text_stage = 0, unet_stage = 0, vae_stage = 0;
  uint64_t peak = 0;         // what must fit at the worst moment
  std::string describe() const;  // "weights 1,640 MiB + UNet activations ..." for messages
  std::string describe_stages() const;  // "text 1,640 MiB, UNet ..., VAE ..." (each stage alone)
};

// What an estimate depends on besides the model's architecture and precision.
struct MemoryQuery {
  // Device bytes of each network; the VAE's: the decoder, and the encoder when an init image
  // needs it.
  uint64_t text_weights = 0, unet_weights = 0, vae_weights = 0;
  int width = 512, height = 512;
  int batch = 1;                 // UNet batch: 2 with classifier-free guidance
  size_t prompt_bytes = 0;       // the longer prompt: how many 77-token chunks the text may need
  bool lowvram = false;          // one network resident at a time
  int vae_tile_pixels = 0;       // the VAE's tile edge in image pixels; 0 = the whole image
  // The largest tensor's device bytes: uploads go through a staging buffer of up to 64 MiB
  // that is alive next to the weights already resident (kStagingChunk, gpu/memory.cpp).
  uint64_t largest_tensor = 64ull << 20;
};

// The estimate itself (SdPipeline::memory_estimate fills the query from its checkpoint and
// options); usable without a checkpoint, e.g. for a family's published architecture.
MemoryEstimate estimate_memory(const ModelConfig& cfg, const PrecisionPlan& precision, const MemoryQuery& q);

// The budget: `override_mb` if > 0, else $VKSD_MEMORY_BUDGET_MB if set, else the largest
// device-local heap of the device.
uint64_t memory_budget_bytes(const Context& ctx, uint64_t override_mb = 0);

// Throws vksd::Error when est.peak > budget, explaining the estimate and what would fit.
void require_memory_budget(const MemoryEstimate& est, uint64_t budget, bool lowvram, bool vae_tiled);

}  // namespace vksd
