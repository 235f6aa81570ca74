// The noise schedule a model was trained with, and the ways samplers walk it.
//
// Training (DDPM, "scaled linear" as LDM's v1-inference.yaml): betas = linspace(sqrt(b0),
// sqrt(b1), T)^2 in float64, alphas_cumprod = cumprod(1 - betas), stored as float32 (LDM
// registers the buffer in float32 and every sampler reads it back from there, so we do too).
// A noised latent at step t is x_t = sqrt(ac_t) x0 + sqrt(1 - ac_t) eps.
//
// k-diffusion's view of the same thing: x = x0 + sigma eps with sigma_t = sqrt((1-ac_t)/ac_t);
// the model then gets c_in x = x / sqrt(1 + sigma^2) (which is x_t again) and a fractional
// timestep sigma_to_t(sigma), found by interpolating log(sigma) between the discrete steps.
#pragma once
#include <string>
#include <vector>

#include "runtime/model/model_config.h"

namespace vksd {

enum class Prediction { Epsilon, V };

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const ScheduleConfig& cfg);
  // Use a checkpoint's stored alphas_cumprod (if present) instead of recomputing it.
  NoiseSchedule(const ScheduleConfig& cfg, const std::vector<float>& alphas_cumprod);

  int num_timesteps() const { return (int)alphas_cumprod_.size(); }
  Prediction prediction() const { return prediction_; }
  const std::vector<double>& betas() const { return betas_; }
  // float32 values, widened.
  double alphas_cumprod(int t) const { return alphas_cumprod_.at((size_t)t); }
  const std::vector<double>& alphas_cumprod() const { return alphas_cumprod_; }
  double sigma(int t) const { return sigmas_.at((size_t)t); }
  double sigma_min() const { return sigmas_.front(); }
  double sigma_max() const { return sigmas_.back(); }

  // k-diffusion DiscreteSchedule: linear interpolation of log(sigma) in t.
  double t_to_sigma(double t) const;
  double sigma_to_t(double sigma) const;

  // The model's raw output at a latent x_in = sqrt(a) x0 + sqrt(1-a) eps (a = alpha_cumprod of
  // the noise level) converted to the noise prediction eps: identity for epsilon models;
  // for v-prediction (v = sqrt(a) eps - sqrt(1-a) x0) eps = sqrt(a) v + sqrt(1-a) x_in.
  void output_to_eps(const std::vector<double>& x_in, std::vector<double>& out, double a) const;

 private:
  void derive();
  Prediction prediction_ = Prediction::Epsilon;
  std::vector<double> betas_;
  std::vector<double> alphas_cumprod_;  // float32-rounded
  std::vector<double> sigmas_, log_sigmas_;
};

// A checkpoint's stored alphas_cumprod must be a real schedule: one value per training timestep
// (length num_train_timesteps), finite, strictly decreasing within (0, 1). Anything else
// (length 1, NaN, a flat or rising run) would make sigma_to_t read out of bounds or divide by
// zero. Throws an Error starting with `where`.
void validate_alphas_cumprod(const std::vector<float>& ac, int num_train_timesteps, const std::string& where);

// betas of a schedule config (float64, as LDM's make_beta_schedule).
std::vector<double> make_betas(const ScheduleConfig& cfg);

// LDM make_ddim_timesteps('uniform', steps, T): range(0, T, T // steps) + 1, ascending. Note: when
// T % steps != 0 this yields more than `steps` timesteps (LDM behaviour, kept for parity); a
// value that would reach T is clamped to T - 1.
std::vector<int> ddim_timesteps(int steps, int num_timesteps);

// k-diffusion get_sigmas over the discrete schedule: t_to_sigma(linspace(T-1, 0, n)) + [0].
std::vector<double> discrete_sigmas(const NoiseSchedule& s, int n);

// Which training timesteps an n-step run visits, as diffusers (`timestep_spacing`) and A1111 name
// the choices. Few-step distilled models (SD-Turbo) need `trailing`: its first step is t = T-1,
// pure noise, so one UNet pass gives a clean image; `leading` starts at T - T/n + 1 and
// `linspace` spreads steps over [0, T-1]. `Default` keeps each sampler's reference behaviour
// (LDM's uniform DDIM timesteps; k-diffusion's linspace sigmas).
enum class TimestepSpacing { Default, Leading, Trailing, Linspace };
// "default" / "" → Default, "leading", "trailing", "linspace" (Error otherwise, listing them).
TimestepSpacing parse_timestep_spacing(const std::string& name);
const char* timestep_spacing_name(TimestepSpacing s);
// The visited timesteps, largest first, for an explicit spacing (not Default), as diffusers'
// set_timesteps computes them (leading: k (T div n) + steps_offset for k < n, reversed;
// trailing: round(T - k T/n) - 1; linspace: linspace(0, T-1, n) reversed, fractional).
std::vector<double> spaced_timesteps(TimestepSpacing spacing, int steps, int num_timesteps, int steps_offset = 0);
// Karras et al. 2022 (eq. 5), rho = 7: (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho + [0].
std::vector<double> karras_sigmas(int n, double sigma_min, double sigma_max, double rho = 7.0);

}  // namespace vksd
