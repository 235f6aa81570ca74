#include "runtime/diffusion/sampling_loop.h"

#include <chrono>

#include "runtime/diffusion/finite_check.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"

namespace vksd {

Latent sampling_loop(Sampler& sampler, Denoiser& denoiser, LatentStart start, TorchRng& rng, const NoiseSchedule& schedule,
                     Observer* obs, const LoopOptions& o) {
  using Clock = std::chrono::steady_clock;
  auto step_t0 = Clock::now();
  StepHook hook = [&](const StepInfo& info, Latent& xs) {
    require_finite(xs, "the latent after sampling step " + std::to_string(info.index + 1) + " of " + std::to_string(info.count));
    keep_known(start, sampler, info.index, xs);
    if (obs) {
      // Observers get noise predictions whatever the UNet predicts.
      denoiser.branches_to_eps(schedule, info.sigma);
      const NoiseLevel lv = sampler.level(info.index + 1);
      StepEvent e;
      e.index = info.index;
      e.count = info.count;
      e.t = info.t;
      e.sigma = info.sigma;
      e.channels = o.channels, e.height = o.height, e.width = o.width;
      e.x = &xs;
      e.denoised = info.denoised;
      e.eps = info.eps;
      e.eps_cond = &denoiser.out_cond();
      e.eps_uncond = denoiser.guided() ? &denoiser.out_uncond() : nullptr;
      e.x_in = &denoiser.x_in();
      e.x_signal = lv.signal, e.x_noise = lv.noise;
      if (o.attention_maps) e.attention = &denoiser.attention();
      if (o.profile) e.unet_timings = &denoiser.timings();
      e.step_ms = std::chrono::duration<double, std::milli>(Clock::now() - step_t0).count();
      obs->on_step(e);
      if (obs->cancelled()) fail("generation cancelled");
    }
    step_t0 = Clock::now();
  };
  ModelFn model = [&](const Latent& x_in, double t) { return denoiser(x_in, t); };
  const int first = start.first;
  Latent x = std::move(start.x);
  return sampler.run(std::move(x), model, rng, first, hook);
}

}  // namespace vksd
