// Device memory a generation will need, estimated before anything is uploaded, so that a run
// too big for the GPU is refused up front with advice (--lowvram, VAE tiling, a smaller image)
// instead of failing inside the driver minutes later.
//
// The estimate is weights (exact: every network tensor's element count x the device dtype size)
// plus the activation arenas of the graphs (an upper estimate from the architecture: the UNet's
// skip connections at every level plus the level-0 working set of a transformer block, the VAE's
// full-resolution working set, per image of the batch). tests/test_hardening.cpp checks it
// against the memory a real run holds.
#pragma once
#include <cstdint>
#include <string>

namespace vksd {

class Context;

struct MemoryEstimate {
  uint64_t weights = 0;      // resident at once (all three networks, or the largest with lowvram)
  uint64_t text = 0, unet = 0, vae = 0;  // activation arenas
  uint64_t peak = 0;         // what must fit at the worst moment
  std::string describe() const;  // "weights 1,640 MiB + UNet activations ..." for messages
};

// The budget: `override_mb` if > 0, else $VKSD_MEMORY_BUDGET_MB if set, else the largest
// device-local heap of the device.
uint64_t memory_budget_bytes(const Context& ctx, uint64_t override_mb = 0);

// Throws vksd::Error when est.peak > budget, explaining the estimate and what would fit.
void require_memory_budget(const MemoryEstimate& est, uint64_t budget, bool lowvram, bool vae_tiled);

}  // namespace vksd
