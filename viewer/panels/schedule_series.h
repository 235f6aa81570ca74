// The numbers the "noise schedule" panel plots, computed from the model's NoiseSchedule and the
// runtime's Sampler API only (no schedule maths of its own), so that a test can hold them against
// the schedule code.
#pragma once
#include <vector>

#include "runtime/diffusion/samplers.h"
#include "runtime/diffusion/schedule.h"

namespace vksd::view {

// Per training timestep t = 0 .. T-1.
struct ScheduleSeries {
  std::vector<double> t;          // 0, 1, ..., T-1
  std::vector<double> alpha_bar;  // NoiseSchedule::alphas_cumprod(t)
  std::vector<double> sigma;      // NoiseSchedule::sigma(t) = sqrt((1 - abar) / abar)
  std::vector<double> snr;        // abar / (1 - abar): signal power over noise power
  std::vector<double> signal;     // sqrt(abar): the weight of x0 in x_t
  std::vector<double> noise;      // sqrt(1 - abar): the weight of eps in x_t
};
ScheduleSeries schedule_series(const NoiseSchedule& s);

// What a sampler visits, step by step (Sampler::timestep(i), ::sigma_at(i), i < steps()).
struct SamplerVisits {
  std::vector<double> t, sigma;
};
SamplerVisits sampler_visits(const Sampler& sampler);

// The alpha_bar of a noise level sigma = sqrt((1 - abar) / abar), i.e. 1 / (1 + sigma^2): what a
// step at a fractional timestep (the k-diffusion samplers) mixes with.
inline double alpha_bar_of_sigma(double sigma) { return 1.0 / (1.0 + sigma * sigma); }

}  // namespace vksd::view
