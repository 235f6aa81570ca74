// The update rules. Sources: DDIM (Song et al. 2021, eq. 12, as in CompVis ldm/models/diffusion/
// ddim.py), DDPM posterior (Ho et al. 2020, eqs. 6-7), Euler / Euler ancestral / DPM++ 2M
// (Karras et al. 2022; Lu et al. 2022 "DPM-Solver++", as written in k-diffusion's sampling.py),
// LCM (Luo et al. 2023, the multistep consistency sampler with the c_skip/c_out boundary
// condition of diffusers' LCMScheduler).
#include "runtime/diffusion/samplers.h"

#include <cctype>

#include <algorithm>
#include <cmath>

#include "runtime/error.h"

namespace vksd {

namespace {

struct Names {
  SamplerKind kind;
  const char* cli;
  const char* a1111;
};
constexpr Names kNames[] = {
    {SamplerKind::DDIM, "ddim", "DDIM"},
    {SamplerKind::DDPM, "ddpm", "DDPM"},
    {SamplerKind::Euler, "euler", "Euler"},
    {SamplerKind::EulerAncestral, "euler_a", "Euler a"},
    {SamplerKind::DpmPP2M, "dpm++2m", "DPM++ 2M"},
    {SamplerKind::DpmPP2MKarras, "dpm++2m_karras", "DPM++ 2M Karras"},
    {SamplerKind::LCM, "lcm", "LCM"},
};

Latent randn_like(TorchRng& rng, size_t n) {
  auto f = rng.randn((int64_t)n);
  return Latent(f.begin(), f.end());
}

// ---- DDPM-scaled family ----------------------------------------------------------------------

// Samplers that visit integer training timesteps, largest first, with the latent at
// sqrt(a) x0 + sqrt(1 - a) noise for a = alphas_cumprod(t). a_end is the level after the last
// step: 1 (the clean latent), or alphas_cumprod[0] for LDM's DDIM.
class TimestepSampler : public Sampler {
 public:
  TimestepSampler(SamplerKind k, const NoiseSchedule& s, std::vector<int> largest_first, double a_end)
      : Sampler(k, s), ts_(std::move(largest_first)), a_end_(a_end) {
    steps_ = (int)ts_.size();
  }
  int t_of(int i) const { return ts_[(size_t)i]; }
  // alphas_cumprod of the latent before step i; i == steps(): after the last step.
  double a_at(int i) const { return i < steps_ ? sched_.alphas_cumprod(t_of(i)) : a_end_; }
  NoiseLevel level(int i) const override {
    double a = a_at(i);
    return {std::sqrt(a), std::sqrt(1 - a)};
  }
  double init_noise_scale() const override { return 1.0; }
  double timestep(int i) const override { return t_of(i); }
  double sigma_at(int i) const override { return sched_.sigma(t_of(i)); }

 protected:
  // The clean latent implied by the noise prediction e at level a_t.
  static double x0_of(double x, double e, double a_t) { return (x - std::sqrt(1 - a_t) * e) / std::sqrt(a_t); }

 private:
  std::vector<int> ts_;
  double a_end_;
};

// The integer timesteps a DDPM-family sampler visits, largest first: LDM's uniform DDIM
// timesteps by default, else the spacing's (rounded, as diffusers' DDIM/DDPM schedulers do).
struct Spacing {
  TimestepSpacing kind = TimestepSpacing::Default;
  int offset = 0;
};
std::vector<int> ddim_visit_order(const NoiseSchedule& s, int steps, Spacing sp) {
  std::vector<int> ts;
  if (sp.kind == TimestepSpacing::Default) {
    ts = ddim_timesteps(steps, s.num_timesteps());
    std::reverse(ts.begin(), ts.end());
  } else {
    for (double t : spaced_timesteps(sp.kind, steps, s.num_timesteps(), sp.offset)) ts.push_back((int)std::lround(t));
  }
  return ts;
}

// k-diffusion sigmas: linspace over the discrete schedule by default, else the spacing's
// timesteps mapped to sigma (diffusers' Euler/DPM schedulers: interpolated sigmas + [0]).
std::vector<double> visit_sigmas(const NoiseSchedule& s, int steps, Spacing sp) {
  if (sp.kind == TimestepSpacing::Default) return discrete_sigmas(s, steps);
  std::vector<double> sig;
  for (double t : spaced_timesteps(sp.kind, steps, s.num_timesteps(), sp.offset)) sig.push_back(s.t_to_sigma(t));
  sig.push_back(0.0);
  return sig;
}

// DDIM over LDM's uniform timesteps; eta = 0 is deterministic.
class DdimSampler : public TimestepSampler {
 public:
  // The last step goes to alphas_cumprod[0], not 1 (original LDM).
  DdimSampler(const NoiseSchedule& s, int steps, double eta, Spacing sp)
      : TimestepSampler(SamplerKind::DDIM, s, ddim_visit_order(s, steps, sp), s.alphas_cumprod(0)), eta_(eta < 0 ? 0.0 : eta) {}

  void step(int i, Latent& x, const ModelFn& model, TorchRng& rng, StepInfo& info, Latent& e,
            Latent& pred_x0) override {
    const int t = t_of(i);
    const double a_t = a_at(i), a_p = a_at(i + 1);
    info.t = t;
    e = eval_eps(model, x, t, a_t);
    const double sigma_t = eta_ * std::sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p));
    const double dir = std::sqrt(std::max(0.0, 1 - a_p - sigma_t * sigma_t));
    pred_x0.resize(x.size());
    for (size_t k = 0; k < x.size(); ++k) pred_x0[k] = x0_of(x[k], e[k], a_t);
    Latent noise = sigma_t > 0 ? randn_like(rng, x.size()) : Latent();
    for (size_t k = 0; k < x.size(); ++k)
      x[k] = std::sqrt(a_p) * pred_x0[k] + dir * e[k] + (sigma_t > 0 ? sigma_t * noise[k] : 0.0);
  }

 private:
  double eta_;
};

// Ancestral sampling from the DDPM posterior q(x_prev | x_t, x0) over the same timesteps as
// DDIM, ending at the clean latent (a_prev = 1 after the last step).
class DdpmSampler : public TimestepSampler {
 public:
  DdpmSampler(const NoiseSchedule& s, int steps, Spacing sp)
      : TimestepSampler(SamplerKind::DDPM, s, ddim_visit_order(s, steps, sp), 1.0) {}

  void step(int i, Latent& x, const ModelFn& model, TorchRng& rng, StepInfo& info, Latent& e,
            Latent& x0) override {
    const int t = t_of(i);
    const double a_t = a_at(i), a_p = a_at(i + 1);
    info.t = t;
    e = eval_eps(model, x, t, a_t);
    const double beta = 1 - a_t / a_p;  // the effective beta between the two visited steps
    const double c_x0 = std::sqrt(a_p) * beta / (1 - a_t);
    const double c_xt = std::sqrt(a_t / a_p) * (1 - a_p) / (1 - a_t);
    const double var = (1 - a_p) / (1 - a_t) * beta;
    x0.resize(x.size());
    for (size_t k = 0; k < x.size(); ++k) x0[k] = x0_of(x[k], e[k], a_t);
    Latent noise = var > 0 ? randn_like(rng, x.size()) : Latent();
    for (size_t k = 0; k < x.size(); ++k)
      x[k] = c_x0 * x0[k] + c_xt * x[k] + (var > 0 ? std::sqrt(var) * noise[k] : 0.0);
  }
};

// The LCM timesteps, largest first: evenly spaced indices into the 50-step distillation
// schedule, floor(linspace(0, 50, steps, endpoint=False)).
std::vector<int> lcm_visit_order(const NoiseSchedule& s, int steps) {
  const int T = s.num_timesteps(), original_steps = 50;
  if (steps < 1 || steps > original_steps) fail("lcm: steps must be in [1, 50] (got " + std::to_string(steps) + ")");
  const int c = T / original_steps;
  std::vector<int> origin;
  for (int k = 1; k <= original_steps; ++k) origin.push_back(k * c - 1);
  std::vector<int> ts;
  for (int k = 0; k < steps; ++k) ts.push_back(origin[(size_t)(original_steps - 1 - (k * original_steps) / steps)]);
  return ts;
}

// Latent Consistency Model multistep sampling: predict x0 with the consistency boundary
// condition, then re-noise it to the next timestep with fresh noise.
class LcmSampler : public TimestepSampler {
 public:
  LcmSampler(const NoiseSchedule& s, int steps) : TimestepSampler(SamplerKind::LCM, s, lcm_visit_order(s, steps), 1.0) {}

  void step(int i, Latent& x, const ModelFn& model, TorchRng& rng, StepInfo& info, Latent& e,
            Latent& den) override {
    const int t = t_of(i);
    const double a_t = a_at(i);
    info.t = t;
    e = eval_eps(model, x, t, a_t);
    const double sigma_data = 0.5, scaled_t = t * 10.0;
    const double c_skip = sigma_data * sigma_data / (scaled_t * scaled_t + sigma_data * sigma_data);
    const double c_out = scaled_t / std::sqrt(scaled_t * scaled_t + sigma_data * sigma_data);
    den.resize(x.size());
    for (size_t k = 0; k < x.size(); ++k) den[k] = c_out * x0_of(x[k], e[k], a_t) + c_skip * x[k];
    if (i + 1 < steps_) {
      const double a_p = a_at(i + 1);
      Latent noise = randn_like(rng, x.size());
      for (size_t k = 0; k < x.size(); ++k) x[k] = std::sqrt(a_p) * den[k] + std::sqrt(1 - a_p) * noise[k];
    } else {
      x = den;
    }
  }
};

// ---- k-diffusion family ----------------------------------------------------------------------

class SigmaSampler : public Sampler {
 public:
  SigmaSampler(SamplerKind k, const NoiseSchedule& s, std::vector<double> sigmas) : Sampler(k, s), sig_(std::move(sigmas)) {
    steps_ = (int)sig_.size() - 1;
  }
  NoiseLevel level(int i) const override { return {1.0, sig_[(size_t)i]}; }
  double init_noise_scale() const override { return sig_[0]; }
  double timestep(int i) const override { return sched_.sigma_to_t(sig_[(size_t)i]); }
  double sigma_at(int i) const override { return sig_[(size_t)i]; }

 protected:
  // The k-diffusion denoiser: c_in scaling, fractional t, denoised = x - sigma eps.
  void denoise(int i, const Latent& x, const ModelFn& model, StepInfo& info, Latent& e, Latent& den) const {
    const double s = sig_[(size_t)i];
    const double c_in = 1.0 / std::sqrt(s * s + 1.0);
    Latent x_in(x.size());
    for (size_t k = 0; k < x.size(); ++k) x_in[k] = x[k] * c_in;
    info.t = sched_.sigma_to_t(s);
    e = eval_eps(model, x_in, info.t, 1.0 / (1.0 + s * s));
    den.resize(x.size());
    for (size_t k = 0; k < x.size(); ++k) den[k] = x[k] - s * e[k];
  }
  std::vector<double> sig_;
};

class EulerSampler : public SigmaSampler {
 public:
  EulerSampler(const NoiseSchedule& s, int steps, Spacing sp) : SigmaSampler(SamplerKind::Euler, s, visit_sigmas(s, steps, sp)) {}
  void step(int i, Latent& x, const ModelFn& model, TorchRng&, StepInfo& info, Latent& e, Latent& den) override {
    denoise(i, x, model, info, e, den);
    const double s = sig_[(size_t)i], dt = sig_[(size_t)i + 1] - s;
    for (size_t k = 0; k < x.size(); ++k) x[k] += (x[k] - den[k]) / s * dt;
  }
};

class EulerAncestralSampler : public SigmaSampler {
 public:
  EulerAncestralSampler(const NoiseSchedule& s, int steps, double eta, Spacing sp)
      : SigmaSampler(SamplerKind::EulerAncestral, s, visit_sigmas(s, steps, sp)), eta_(eta < 0 ? 1.0 : eta) {}
  void step(int i, Latent& x, const ModelFn& model, TorchRng& rng, StepInfo& info, Latent& e, Latent& den) override {
    denoise(i, x, model, info, e, den);
    const double s = sig_[(size_t)i], s_next = sig_[(size_t)i + 1];
    // Split the way down to s_next into a deterministic part to s_down and fresh noise s_up,
    // with s_down^2 + s_up^2 = s_next^2.
    double s_up = 0, s_down = s_next;
    if (eta_ > 0 && s_next > 0) {
      s_up = std::min(s_next, eta_ * std::sqrt(s_next * s_next * (s * s - s_next * s_next) / (s * s)));
      s_down = std::sqrt(s_next * s_next - s_up * s_up);
    }
    for (size_t k = 0; k < x.size(); ++k) x[k] += (x[k] - den[k]) / s * (s_down - s);
    if (s_next > 0 && s_up > 0) {
      Latent noise = randn_like(rng, x.size());
      for (size_t k = 0; k < x.size(); ++k) x[k] += noise[k] * s_up;
    }
  }

 private:
  double eta_;
};

// DPM-Solver++(2M): second-order multistep in log-sigma time, reusing the previous x0 prediction.
class DpmPP2MSampler : public SigmaSampler {
 public:
  DpmPP2MSampler(SamplerKind k, const NoiseSchedule& s, std::vector<double> sig) : SigmaSampler(k, s, std::move(sig)) {}
  void step(int i, Latent& x, const ModelFn& model, TorchRng&, StepInfo& info, Latent& e, Latent& den) override {
    if (i == 0 || last_step_ != i - 1) old_den_.clear();  // a fresh run (or img2img start)
    denoise(i, x, model, info, e, den);
    const double s = sig_[(size_t)i], s_next = sig_[(size_t)i + 1];
    if (s_next == 0) {
      x = den;  // lambda_next = inf: the update lands exactly on the x0 prediction
    } else {
      const double lam = -std::log(s), lam_next = -std::log(s_next), h = lam_next - lam;
      const double ratio = s_next / s, coef = -std::expm1(-h);
      if (old_den_.empty()) {
        for (size_t k = 0; k < x.size(); ++k) x[k] = ratio * x[k] + coef * den[k];
      } else {
        const double h_last = lam - (-std::log(sig_[(size_t)i - 1]));
        const double r = h_last / h;
        const double a = 1 + 1 / (2 * r), b = 1 / (2 * r);
        for (size_t k = 0; k < x.size(); ++k) x[k] = ratio * x[k] + coef * (a * den[k] - b * old_den_[k]);
      }
    }
    old_den_ = den;
    last_step_ = i;
  }

 private:
  Latent old_den_;
  int last_step_ = -2;
};

}  // namespace

static std::string lower(std::string s) {
  for (char& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

SamplerKind parse_sampler(const std::string& name) {
  const std::string n = lower(name);
  for (const auto& k : kNames)
    if (n == k.cli || n == lower(k.a1111)) return k.kind;
  // Other tools' spellings: A1111's API aliases (k_*), diffusers/ComfyUI names.
  static const std::pair<const char*, SamplerKind> kAliases[] = {
      {"k_euler_a", SamplerKind::EulerAncestral},      {"euler_ancestral", SamplerKind::EulerAncestral},
      {"k_euler", SamplerKind::Euler},                 {"k_dpmpp_2m", SamplerKind::DpmPP2M},
      {"dpmpp_2m", SamplerKind::DpmPP2M},              {"k_dpmpp_2m_ka", SamplerKind::DpmPP2MKarras},
      {"dpmpp_2m_karras", SamplerKind::DpmPP2MKarras}, {"dpm++ 2m karras", SamplerKind::DpmPP2MKarras}};
  for (const auto& [alias, kind] : kAliases)
    if (n == alias) return kind;
  std::string valid;
  for (const auto& k : kNames) valid += std::string(valid.empty() ? "" : ", ") + k.cli + " (\"" + k.a1111 + "\")";
  fail("unknown sampler '" + name + "' (valid: " + valid + ")");
}

SamplerKind apply_scheduler(SamplerKind kind, const std::string& scheduler) {
  const std::string s = lower(scheduler);
  if (s.empty() || s == "automatic" || s == "default") return kind;
  if (s == "karras") {
    if (kind == SamplerKind::DpmPP2M || kind == SamplerKind::DpmPP2MKarras) return SamplerKind::DpmPP2MKarras;
    fail(std::string("--scheduler karras is implemented for dpm++2m only, not for ") + sampler_cli_name(kind) +
         " (use --sampler dpm++2m --scheduler karras, or drop --scheduler)");
  }
  if (s == "discrete" || s == "normal" || s == "uniform")
    return kind == SamplerKind::DpmPP2MKarras ? SamplerKind::DpmPP2M : kind;
  fail("--scheduler '" + scheduler + "' is not implemented (vksd has: discrete, the model's own timesteps, the " +
       "default; karras, for dpm++2m)");
}

const char* sampler_cli_name(SamplerKind k) {
  for (const auto& n : kNames)
    if (n.kind == k) return n.cli;
  return "?";
}
const char* sampler_a1111_name(SamplerKind k) {
  for (const auto& n : kNames)
    if (n.kind == k) return n.a1111;
  return "?";
}
std::vector<std::string> sampler_cli_names() {
  std::vector<std::string> r;
  for (const auto& n : kNames) r.push_back(n.cli);
  return r;
}

std::unique_ptr<Sampler> Sampler::create(SamplerKind kind, const NoiseSchedule& s, int steps, double eta,
                                         TimestepSpacing spacing, int steps_offset) {
  if (steps < 1) fail("sampler: steps must be >= 1 (got " + std::to_string(steps) + ")");
  if (spacing != TimestepSpacing::Default && (kind == SamplerKind::DpmPP2MKarras || kind == SamplerKind::LCM))
    fail(std::string("timestep spacing '") + timestep_spacing_name(spacing) + "' does not apply to " + sampler_cli_name(kind) +
         ", which chooses its own steps (use it with ddim, ddpm, euler, euler_a or dpm++2m)");
  const Spacing sp{spacing, steps_offset};
  switch (kind) {
    case SamplerKind::DDIM: return std::make_unique<DdimSampler>(s, steps, eta, sp);
    case SamplerKind::DDPM: return std::make_unique<DdpmSampler>(s, steps, sp);
    case SamplerKind::LCM: return std::make_unique<LcmSampler>(s, steps);
    case SamplerKind::Euler: return std::make_unique<EulerSampler>(s, steps, sp);
    case SamplerKind::EulerAncestral: return std::make_unique<EulerAncestralSampler>(s, steps, eta, sp);
    case SamplerKind::DpmPP2M: return std::make_unique<DpmPP2MSampler>(kind, s, visit_sigmas(s, steps, sp));
    case SamplerKind::DpmPP2MKarras:
      return std::make_unique<DpmPP2MSampler>(kind, s, karras_sigmas(steps, s.sigma_min(), s.sigma_max()));
  }
  fail("sampler: unknown kind");
}

Latent Sampler::eval_eps(const ModelFn& model, const Latent& x_in, double t, double a) const {
  Latent out = model(x_in, t);
  if (out.size() != x_in.size())
    fail("sampler: model returned " + std::to_string(out.size()) + " values for a latent of " + std::to_string(x_in.size()));
  sched_.output_to_eps(x_in, out, a);
  return out;
}

Latent Sampler::run(Latent x, const ModelFn& model, TorchRng& rng, int first, const StepHook& hook) {
  if (first < 0 || first > steps_) fail("sampler: first step " + std::to_string(first) + " outside [0, " + std::to_string(steps_) + "]");
  Latent eps, den;
  for (int i = first; i < steps_; ++i) {
    StepInfo info;
    info.index = i;
    info.count = steps_;
    info.sigma = sigma_at(i);
    step(i, x, model, rng, info, eps, den);
    info.eps = &eps;
    info.denoised = &den;
    if (hook) hook(info, x);
  }
  return x;
}

}  // namespace vksd
