#include "runtime/diffusion/schedule.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"

namespace vksd {

std::vector<double> make_betas(const ScheduleConfig& cfg) {
  const int n = cfg.num_train_timesteps;
  if (n < 2) fail("schedule: num_train_timesteps must be >= 2 (got " + std::to_string(n) + ")");
  if (!(cfg.beta_start > 0 && cfg.beta_end > cfg.beta_start && cfg.beta_end < 1))
    fail("schedule: need 0 < beta_start < beta_end < 1");
  std::vector<double> b((size_t)n);
  for (int i = 0; i < n; ++i) {
    double f = (double)i / (n - 1);
    if (cfg.beta_schedule == "scaled_linear") {
      // numpy/torch linspace: start + i * step (step = (end - start) / (n - 1))
      double lo = std::sqrt(cfg.beta_start), hi = std::sqrt(cfg.beta_end);
      double v = lo + i * ((hi - lo) / (n - 1));
      b[i] = v * v;
    } else if (cfg.beta_schedule == "linear") {
      b[i] = cfg.beta_start + f * (cfg.beta_end - cfg.beta_start);
    } else {
      fail("schedule: unknown beta_schedule '" + cfg.beta_schedule + "' (scaled_linear or linear)");
    }
  }
  return b;
}

void validate_alphas_cumprod(const std::vector<float>& ac, int num_train_timesteps, const std::string& where) {
  if (ac.size() != (size_t)num_train_timesteps)
    fail(where + ": stored alphas_cumprod has " + std::to_string(ac.size()) + " values but the schedule has " +
         std::to_string(num_train_timesteps) + " training timesteps");
  for (size_t i = 0; i < ac.size(); ++i) {
    if (!std::isfinite(ac[i]) || !(ac[i] > 0 && ac[i] < 1))
      fail(where + ": stored alphas_cumprod[" + std::to_string(i) + "] = " + std::to_string(ac[i]) + " is not within (0, 1)");
    if (i && !(ac[i] < ac[i - 1]))
      fail(where + ": stored alphas_cumprod is not strictly decreasing at index " + std::to_string(i) + " (" +
           std::to_string(ac[i - 1]) + " then " + std::to_string(ac[i]) + ")");
  }
}

static Prediction parse_prediction(const std::string& p) {
  if (p == "epsilon" || p == "eps") return Prediction::Epsilon;
  if (p == "v_prediction" || p == "v") return Prediction::V;
  fail("schedule: unknown prediction_type '" + p + "' (epsilon or v_prediction)");
}

NoiseSchedule::NoiseSchedule(const ScheduleConfig& cfg) : prediction_(parse_prediction(cfg.prediction_type)) {
  betas_ = make_betas(cfg);
  alphas_cumprod_.resize(betas_.size());
  double prod = 1.0;
  for (size_t i = 0; i < betas_.size(); ++i) {
    prod *= 1.0 - betas_[i];
    alphas_cumprod_[i] = (double)(float)prod;  // LDM keeps the buffer in float32
  }
  derive();
}

NoiseSchedule::NoiseSchedule(const ScheduleConfig& cfg, const std::vector<float>& ac)
    : prediction_(parse_prediction(cfg.prediction_type)) {
  if (ac.empty()) {
    *this = NoiseSchedule(cfg);
    return;
  }
  validate_alphas_cumprod(ac, cfg.num_train_timesteps, "schedule");
  alphas_cumprod_.assign(ac.begin(), ac.end());
  betas_.resize(ac.size());
  for (size_t i = 0; i < ac.size(); ++i) betas_[i] = 1.0 - alphas_cumprod_[i] / (i ? alphas_cumprod_[i - 1] : 1.0);
  derive();
}

void NoiseSchedule::derive() {
  sigmas_.resize(alphas_cumprod_.size());
  log_sigmas_.resize(alphas_cumprod_.size());
  for (size_t i = 0; i < sigmas_.size(); ++i) {
    double a = alphas_cumprod_[i];
    sigmas_[i] = std::sqrt((1.0 - a) / a);
    log_sigmas_[i] = std::log(sigmas_[i]);
  }
}

double NoiseSchedule::t_to_sigma(double t) const {
  const double last = (double)(log_sigmas_.size() - 1);
  t = std::clamp(t, 0.0, last);
  int lo = (int)std::floor(t), hi = (int)std::ceil(t);
  double w = t - lo;
  return std::exp((1.0 - w) * log_sigmas_[(size_t)lo] + w * log_sigmas_[(size_t)hi]);
}

double NoiseSchedule::sigma_to_t(double sigma) const {
  double ls = std::log(sigma);
  // The last index whose log-sigma is <= ls, kept one below the end so that hi exists.
  auto it = std::upper_bound(log_sigmas_.begin(), log_sigmas_.end(), ls);
  int lo = (int)(it - log_sigmas_.begin()) - 1;
  lo = std::clamp(lo, 0, (int)log_sigmas_.size() - 2);
  int hi = lo + 1;
  double w = (log_sigmas_[(size_t)lo] - ls) / (log_sigmas_[(size_t)lo] - log_sigmas_[(size_t)hi]);
  w = std::clamp(w, 0.0, 1.0);
  return (1.0 - w) * lo + w * hi;
}

void NoiseSchedule::output_to_eps(const std::vector<double>& x_in, std::vector<double>& out, double a) const {
  if (prediction_ == Prediction::Epsilon) return;
  const double sa = std::sqrt(a), s1a = std::sqrt(1.0 - a);
  for (size_t i = 0; i < out.size(); ++i) out[i] = sa * out[i] + s1a * x_in[i];
}

std::vector<int> ddim_timesteps(int steps, int num_timesteps) {
  if (steps < 1) fail("DDIM: steps must be >= 1 (got " + std::to_string(steps) + ")");
  if (steps > num_timesteps) fail("DDIM: steps must be <= " + std::to_string(num_timesteps));
  int c = num_timesteps / steps;
  std::vector<int> ts;
  for (int t = 0; t < num_timesteps; t += c) ts.push_back(std::min(t + 1, num_timesteps - 1));
  return ts;
}

std::vector<double> discrete_sigmas(const NoiseSchedule& s, int n) {
  if (n < 1) fail("sampler: steps must be >= 1");
  std::vector<double> sig((size_t)n + 1, 0.0);
  const double tmax = s.num_timesteps() - 1;
  for (int i = 0; i < n; ++i) {
    double t = n == 1 ? tmax : tmax - i * (tmax / (n - 1));  // linspace(T-1, 0, n)
    sig[(size_t)i] = s.t_to_sigma(t);
  }
  return sig;
}

TimestepSpacing parse_timestep_spacing(const std::string& name) {
  if (name.empty() || name == "default") return TimestepSpacing::Default;
  if (name == "leading") return TimestepSpacing::Leading;
  if (name == "trailing") return TimestepSpacing::Trailing;
  if (name == "linspace") return TimestepSpacing::Linspace;
  fail("unknown timestep spacing '" + name + "' (valid: default, leading, trailing, linspace)");
}

const char* timestep_spacing_name(TimestepSpacing s) {
  switch (s) {
    case TimestepSpacing::Default: return "default";
    case TimestepSpacing::Leading: return "leading";
    case TimestepSpacing::Trailing: return "trailing";
    case TimestepSpacing::Linspace: return "linspace";
  }
  return "?";
}

std::vector<double> spaced_timesteps(TimestepSpacing spacing, int steps, int T, int steps_offset) {
  if (steps < 1) fail("sampler: steps must be >= 1 (got " + std::to_string(steps) + ")");
  if (steps > T) fail("sampler: steps must be <= " + std::to_string(T) + " for a schedule of " + std::to_string(T) + " timesteps");
  std::vector<double> ts;
  switch (spacing) {
    case TimestepSpacing::Leading: {
      const int ratio = T / steps;  // integer division, as diffusers
      if ((steps - 1) * ratio + steps_offset > T - 1)
        fail("sampler: leading spacing with steps_offset " + std::to_string(steps_offset) + " allows at most " +
             std::to_string(T - steps_offset) + " steps");
      for (int k = steps - 1; k >= 0; --k) ts.push_back((double)k * ratio + steps_offset);
      break;
    }
    case TimestepSpacing::Trailing: {
      const double ratio = (double)T / steps;
      for (int k = 0; k < steps; ++k) ts.push_back(std::max(0.0, std::round(T - k * ratio) - 1));
      break;
    }
    case TimestepSpacing::Linspace:
      for (int k = 0; k < steps; ++k) ts.push_back(steps == 1 ? 0.0 : (T - 1) * (double)(steps - 1 - k) / (steps - 1));
      break;
    case TimestepSpacing::Default: fail("spaced_timesteps: Default has no single rule (each sampler keeps its own)");
  }
  return ts;
}

std::vector<double> karras_sigmas(int n, double sigma_min, double sigma_max, double rho) {
  if (n < 1) fail("sampler: steps must be >= 1");
  std::vector<double> sig((size_t)n + 1, 0.0);
  const double lo = std::pow(sigma_min, 1.0 / rho), hi = std::pow(sigma_max, 1.0 / rho);
  for (int i = 0; i < n; ++i) {
    double ramp = n == 1 ? 0.0 : (double)i / (n - 1);
    sig[(size_t)i] = std::pow(hi + ramp * (lo - hi), rho);
  }
  return sig;
}

}  // namespace vksd
