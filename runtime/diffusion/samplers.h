// Samplers: how a noisy latent is walked down the noise schedule, one model call per step.
// They run on the CPU in double (a latent is only 4 x h/8 x w/8 per image) and see the model
// only through ModelFn, so they are tested without any network.
//
// Two families, each in its own latent space:
//  * DDPM-scaled (ddim, ddpm, lcm): x = sqrt(a) x0 + sqrt(1-a) eps, the model gets x and the
//    integer training timestep;
//  * k-diffusion (euler, euler_a, dpm++2m, dpm++2m_karras): x = x0 + sigma eps, the model gets
//    x / sqrt(1 + sigma^2) and the fractional timestep sigma_to_t(sigma).
// Both end at the clean latent, which is what the VAE decodes.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/diffusion/rng.h"
#include "runtime/diffusion/schedule.h"

namespace vksd {

using Latent = std::vector<double>;

enum class SamplerKind { DDIM, DDPM, Euler, EulerAncestral, DpmPP2M, DpmPP2MKarras, LCM };

// "ddim", "ddpm", "euler", "euler_a", "dpm++2m", "dpm++2m_karras", "lcm", A1111's names
// ("Euler a", "DPM++ 2M Karras", ...; any case) and their k_* API aliases (Error otherwise,
// listing the valid names).
SamplerKind parse_sampler(const std::string& name);
// A scheduler (noise-level spacing) chosen apart from the sampler, as A1111 1.9+ and
// stable-diffusion.cpp do: ""/"automatic" keeps `kind`; "karras" turns dpm++2m into
// dpm++2m_karras; "discrete"/"normal" the reverse. Other names (exponential, ays, ...) and karras
// with another sampler are an Error that says what exists.
SamplerKind apply_scheduler(SamplerKind kind, const std::string& scheduler);
const char* sampler_cli_name(SamplerKind k);
const char* sampler_a1111_name(SamplerKind k);  // as A1111 writes it in PNG parameters
std::vector<std::string> sampler_cli_names();

// The model as a sampler sees it: the model's (guided) output for input latent x_in at timestep
// t. The output is what the network predicts (eps or v); the sampler converts v itself.
using ModelFn = std::function<Latent(const Latent& x_in, double t)>;

// x = signal * x0 + noise * eps: the noise level of the sampler's latent at some point.
struct NoiseLevel {
  double signal = 1, noise = 0;
};

// What happened in one step (reported after the update).
struct StepInfo {
  int index = 0;        // 0-based step of the full schedule
  int count = 0;        // steps of the full schedule
  double t = 0;         // timestep the model saw
  double sigma = 0;     // noise level sqrt((1-a)/a) the step started from
  const Latent* eps = nullptr;       // noise prediction (guided, v converted)
  const Latent* denoised = nullptr;  // x0 prediction
};

// Called after every step with the updated latent (mutable: inpainting blends it).
using StepHook = std::function<void(const StepInfo&, Latent& x)>;

class Sampler {
 public:
  virtual ~Sampler() = default;
  // `eta`: stochasticity for ddim (default 0) and euler_a (default 1); < 0 means the default.
  // `spacing`: which timesteps to visit (schedule.h); Default keeps the sampler's reference
  // choice. Karras and LCM define their own steps and refuse an explicit spacing.
  static std::unique_ptr<Sampler> create(SamplerKind kind, const NoiseSchedule& schedule, int steps, double eta = -1,
                                         TimestepSpacing spacing = TimestepSpacing::Default, int steps_offset = 0);

  SamplerKind kind() const { return kind_; }
  // Model evaluations in a full run (ddim may use more than asked: see ddim_timesteps).
  int steps() const { return steps_; }
  // Noise level of the latent before step i; i == steps(): after the last step.
  virtual NoiseLevel level(int i) const = 0;
  // Scale of the pure-noise start for text-to-image (1 for the DDPM family, sigma_max for
  // k-diffusion; LDM starts DDIM from unscaled randn).
  virtual double init_noise_scale() const = 0;
  // Timestep and sigma the model sees at step i.
  virtual double timestep(int i) const = 0;
  virtual double sigma_at(int i) const = 0;

  // Run steps [first, steps()) from x (which must be at level(first)). Stochastic samplers draw
  // their fresh noise from `rng` (the seed's generator, continued, as LDM/k-diffusion do).
  Latent run(Latent x, const ModelFn& model, TorchRng& rng, int first = 0, const StepHook& hook = {});

 protected:
  Sampler(SamplerKind k, const NoiseSchedule& s) : kind_(k), sched_(s) {}
  // One step: update x in place; fill t, eps and denoised.
  virtual void step(int i, Latent& x, const ModelFn& model, TorchRng& rng, StepInfo& info, Latent& eps,
                    Latent& denoised) = 0;
  // Model output -> eps for a model input at alpha_cumprod a.
  Latent eval_eps(const ModelFn& model, const Latent& x_in, double t, double a) const;

  SamplerKind kind_;
  const NoiseSchedule& sched_;
  int steps_ = 0;
};

}  // namespace vksd
