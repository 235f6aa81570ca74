// The sampler loop of a generation: the sampler's steps from the starting latent through the
// denoiser; after every step the latent is checked finite, the known region is re-imposed
// (inpainting with an ordinary UNet) and the step is reported to the observer (StepEvent),
// which may cancel the run.
#pragma once
#include "runtime/diffusion/denoiser.h"
#include "runtime/diffusion/latent_init.h"

namespace vksd {

class NoiseSchedule;
class Observer;
class TorchRng;

struct LoopOptions {
  int channels = 4, height = 0, width = 0;  // latent geometry, for the StepEvents
  bool attention_maps = false, profile = false;
};

// Runs steps [start.first, sampler.steps()) and returns the final latent.
Latent sampling_loop(Sampler& sampler, Denoiser& denoiser, LatentStart start, TorchRng& rng, const NoiseSchedule& schedule,
                     Observer* obs, const LoopOptions& o);

}  // namespace vksd
