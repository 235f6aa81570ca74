// Samplers without a network: DDIM and Euler step by step against the reference run (fed the
// reference UNet outputs), the others against their published update rules re-derived here in
// plain double loops, and all of them on a Gaussian toy problem whose exact denoiser and
// probability-flow solution are known in closed form.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "runtime/error.h"
#include "runtime/diffusion/rng.h"
#include "runtime/diffusion/samplers.h"
#include "runtime/diffusion/schedule.h"
#include "tests/test_util.h"

using namespace vksd;

static std::string vec(const std::string& name) { return test::vectors_dir() + "/" + name + ".npy"; }
static Latent to_d(const std::vector<float>& v) { return Latent(v.begin(), v.end()); }
static std::vector<float> to_f(const Latent& v) { return std::vector<float>(v.begin(), v.end()); }

static double rel(const Latent& a, const Latent& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return a.size() == b.size() ? std::sqrt(num / std::max(den, 1e-300)) : INFINITY;
}

TEST_CASE("schedule: betas, alphas_cumprod and sigmas of SD 1.x") {
  NoiseSchedule s{ScheduleConfig{}};
  CHECK(s.num_timesteps() == 1000);
  CHECK(s.betas()[0] == doctest::Approx(0.00085).epsilon(1e-12));
  CHECK(s.betas()[999] == doctest::Approx(0.012).epsilon(1e-12));
  // alphas_cumprod[0] = 1 - beta_0, stored as float32.
  CHECK(s.alphas_cumprod(0) == (double)(float)(1 - 0.00085));
  // Its published value for SD 1.x: sigma_max 14.6146, sigma_min 0.0292.
  CHECK(s.sigma_max() == doctest::Approx(14.614646).epsilon(1e-6));
  CHECK(s.sigma_min() == doctest::Approx(0.029168).epsilon(1e-4));
  // t <-> sigma round trips and interpolates log-sigma linearly between integers.
  for (double t : {0.0, 1.0, 250.5, 666.0, 777.25, 998.9, 999.0}) CHECK(s.sigma_to_t(s.t_to_sigma(t)) == doctest::Approx(t).epsilon(1e-9));
  double mid = s.t_to_sigma(500.5);
  CHECK(std::log(mid) == doctest::Approx(0.5 * (std::log(s.sigma(500)) + std::log(s.sigma(501)))).epsilon(1e-12));
  // Out of range sigmas clamp to the ends.
  CHECK(s.sigma_to_t(1e-4) == 0.0);
  CHECK(s.sigma_to_t(100.0) == 999.0);
}

TEST_CASE("schedule: DDIM timesteps, Karras sigmas, v-prediction conversion") {
  CHECK(ddim_timesteps(4, 1000) == std::vector<int>{1, 251, 501, 751});
  CHECK(ddim_timesteps(50, 1000).size() == 50);
  CHECK(ddim_timesteps(50, 1000).back() == 981);
  CHECK(ddim_timesteps(3, 1000) == std::vector<int>{1, 334, 667, 999});  // LDM: 4 timesteps for 3 steps
  CHECK(ddim_timesteps(1000, 1000).back() == 999);
  CHECK_THROWS_AS(ddim_timesteps(0, 1000), Error);

  auto k = karras_sigmas(10, 0.03, 14.6);
  REQUIRE(k.size() == 11);
  CHECK(k[0] == doctest::Approx(14.6).epsilon(1e-12));
  CHECK(k[9] == doctest::Approx(0.03).epsilon(1e-12));
  CHECK(k[10] == 0.0);
  // Evenly spaced in sigma^(1/7).
  for (int i = 1; i < 9; ++i)
    CHECK(std::pow(k[i], 1 / 7.0) - std::pow(k[i + 1], 1 / 7.0) ==
          doctest::Approx(std::pow(k[0], 1 / 7.0) - std::pow(k[1], 1 / 7.0)).epsilon(1e-9));

  // v = sqrt(a) eps - sqrt(1-a) x0 for a latent x = sqrt(a) x0 + sqrt(1-a) eps.
  ScheduleConfig vc;
  vc.prediction_type = "v_prediction";
  NoiseSchedule sv(vc);
  const double a = 0.3;
  Latent x0 = {0.5, -1.0, 2.0}, eps = {0.1, 0.7, -1.3}, x(3), v(3);
  for (int i = 0; i < 3; ++i) {
    x[i] = std::sqrt(a) * x0[i] + std::sqrt(1 - a) * eps[i];
    v[i] = std::sqrt(a) * eps[i] - std::sqrt(1 - a) * x0[i];
  }
  sv.output_to_eps(x, v, a);
  for (int i = 0; i < 3; ++i) CHECK(v[i] == doctest::Approx(eps[i]).epsilon(1e-12));
  ScheduleConfig bad;
  bad.prediction_type = "sample";
  CHECK_THROWS_AS(NoiseSchedule{bad}, Error);
}

TEST_CASE("sampler names round trip, unknown names are an error listing the valid ones") {
  for (auto& n : sampler_cli_names()) CHECK(sampler_cli_name(parse_sampler(n)) == n);
  CHECK(std::string(sampler_a1111_name(SamplerKind::EulerAncestral)) == "Euler a");
  try {
    parse_sampler("heun");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("dpm++2m_karras") != std::string::npos);
  }
}

TEST_CASE("DDIM: 4 steps CFG 7.5 reproduce the reference run step by step (reference eps fed in)") {
  REQUIRE_SHARED();
  NoiseSchedule s{ScheduleConfig{}};
  auto sampler = Sampler::create(SamplerKind::DDIM, s, 4, 0.0);
  REQUIRE(sampler->steps() == 4);
  auto ts = test::load_npy(vec("ddim_timesteps")).data;
  auto alphas = test::load_npy(vec("ddim_alphas")).data, alphas_prev = test::load_npy(vec("ddim_alphas_prev")).data;
  for (int i = 0; i < 4; ++i) {
    CHECK(sampler->timestep(i) == ts[3 - i]);  // visited in reverse
    // alphas_cumprod must be the float32 values exactly.
    CHECK((float)(sampler->level(i).signal * sampler->level(i).signal) == doctest::Approx(alphas[3 - i]).epsilon(1e-6));
    CHECK((float)(sampler->level(i + 1).signal * sampler->level(i + 1).signal) ==
          doctest::Approx(alphas_prev[3 - i]).epsilon(1e-6));
  }
  CHECK(s.alphas_cumprod(751) == (double)alphas[3]);
  CHECK(s.alphas_cumprod(0) == (double)alphas_prev[0]);
  CHECK(sampler->init_noise_scale() == 1.0);

  auto x = to_d(test::load_npy(vec("ddim_xT")).data);
  int calls = 0;
  ModelFn model = [&](const Latent& x_in, double t) {
    auto step = std::to_string(calls++);
    CHECK(t == test::load_npy(vec("ddim_step" + step + "_t")).data[0]);
    auto u = test::load_npy(vec("ddim_step" + step + "_eps_uncond")).data;
    auto c = test::load_npy(vec("ddim_step" + step + "_eps_cond")).data;
    Latent e(u.size());
    for (size_t k = 0; k < e.size(); ++k) e[k] = u[k] + 7.5 * ((double)c[k] - u[k]);
    return e;
  };
  TorchRng rng(0);
  int hooks = 0;
  auto final_x = sampler->run(x, model, rng, 0, [&](const StepInfo& info, Latent& xs) {
    auto step = std::to_string(info.index);
    auto ref_x0 = test::load_npy(vec("ddim_step" + step + "_pred_x0")).data;
    auto ref_x = test::load_npy(vec("ddim_step" + step + "_x_prev")).data;
    INFO("step " << step);
    CHECK(test::rel_l2(to_f(*info.denoised), ref_x0) < 2e-6);
    CHECK(test::rel_l2(to_f(xs), ref_x) < 2e-6);
    ++hooks;
  });
  CHECK(hooks == 4);
  CHECK(test::rel_l2(to_f(final_x), test::load_npy(vec("ddim_final_latent")).data) < 2e-6);
}

static void run_euler_reference(const std::string& prefix) {
  NoiseSchedule s{ScheduleConfig{}};
  auto sampler = Sampler::create(SamplerKind::Euler, s, 4);
  auto sig = test::load_npy(vec("euler_sigmas")).data, ts = test::load_npy(vec("euler_timesteps")).data;
  for (int i = 0; i < 4; ++i) {
    CHECK(sampler->sigma_at(i) == doctest::Approx(sig[i]).epsilon(1e-6));
    CHECK(sampler->timestep(i) == doctest::Approx(ts[i]).epsilon(1e-6).scale(1.0));
  }
  CHECK(sampler->level(4).noise == 0.0);
  CHECK(sig[4] == 0.0f);
  auto noise = to_d(test::load_npy(vec("euler_noise")).data);
  Latent x(noise.size());
  for (size_t k = 0; k < x.size(); ++k) x[k] = noise[k] * sampler->init_noise_scale();
  CHECK(test::rel_l2(to_f(x), test::load_npy(vec("euler_xT")).data) < 1e-6);
  int calls = 0;
  ModelFn model = [&](const Latent& x_in, double t) {
    const int i = calls++;
    CHECK(t == doctest::Approx(ts[i]).scale(1.0).epsilon(1e-6));
    // The model sees c_in x, x being the reference latent before this step.
    const double c_in = 1 / std::sqrt(1 + (double)sig[i] * sig[i]);
    auto x_before = test::load_npy(vec(i == 0 ? "euler_xT" : prefix + "_step" + std::to_string(i - 1) + "_x")).data;
    for (auto& v : x_before) v = (float)(v * c_in);
    CHECK(test::rel_l2(to_f(x_in), x_before) < 2e-6);
    return to_d(test::load_npy(vec(prefix + "_step" + std::to_string(i) + "_eps")).data);
  };
  TorchRng rng(0);
  auto fin = sampler->run(x, model, rng, 0, [&](const StepInfo& info, Latent& xs) {
    auto step = std::to_string(info.index);
    INFO(prefix << " step " << step);
    CHECK(test::rel_l2(to_f(*info.denoised), test::load_npy(vec(prefix + "_step" + step + "_denoised")).data) < 2e-6);
    CHECK(test::rel_l2(to_f(xs), test::load_npy(vec(prefix + "_step" + step + "_x")).data) < 2e-6);
  });
  CHECK(test::rel_l2(to_f(fin), test::load_npy(vec(prefix + "_final_latent")).data) < 2e-6);
}

TEST_CASE("Euler: 4 steps reproduce the reference sigmas, timesteps and latents (CFG and no CFG)") {
  REQUIRE_SHARED();
  run_euler_reference("euler");
  run_euler_reference("euler_nocfg");
}

// ---- a Gaussian toy problem -----------------------------------------------------------------
// Data x0 ~ N(mu, s0^2) elementwise. For x = x0 + sigma eps the ideal denoiser is
//   E[x0 | x] = mu + s0^2 / (s0^2 + sigma^2) (x - mu),
// and the probability-flow ODE dx/dsigma = (x - D(x))/sigma has the exact solution
//   x(sigma) = mu + sqrt(s0^2 + sigma^2) / sqrt(s0^2 + sigma_T^2) (x_T - mu).
struct Toy {
  const NoiseSchedule& s;
  double mu = 0.7, s0 = 0.5;
  int calls = 0;
  // The "network": eps prediction for a DDPM-scaled input x_in = x / sqrt(1 + sigma^2).
  Latent eps(const Latent& x_in, double t) {
    ++calls;
    const double sigma = s.t_to_sigma(t);
    const double scale = std::sqrt(1 + sigma * sigma);
    Latent e(x_in.size());
    for (size_t k = 0; k < e.size(); ++k) {
      double x = x_in[k] * scale;
      double d = mu + s0 * s0 / (s0 * s0 + sigma * sigma) * (x - mu);
      e[k] = (x - d) / sigma;
    }
    return e;
  }
  double denoised(double x, double sigma) const { return mu + s0 * s0 / (s0 * s0 + sigma * sigma) * (x - mu); }
  ModelFn fn() {
    return [this](const Latent& x, double t) { return eps(x, t); };
  }
};

static Latent noise_latent(uint64_t seed, size_t n, double scale) {
  auto f = torch_randn(seed, (int64_t)n);
  Latent x(n);
  for (size_t k = 0; k < n; ++k) x[k] = f[k] * scale;
  return x;
}

TEST_CASE("Euler and DPM++ 2M converge to the exact probability-flow solution at orders 1 and 2") {
  NoiseSchedule s{ScheduleConfig{}};
  Toy toy{s};
  const size_t n = 256;
  // Error against the exact solution at the last non-zero sigma (the final jump to sigma = 0 is a
  // single first-order step in every k-diffusion sampler, whatever the step count).
  auto err_for = [&](SamplerKind kind, int steps) {
    auto sampler = Sampler::create(kind, s, steps);
    const double smax = sampler->init_noise_scale(), slast = sampler->sigma_at(steps - 1);
    Latent xT = noise_latent(5, n, smax);
    TorchRng rng(0);
    double err = 0;
    sampler->run(xT, toy.fn(), rng, 0, [&](const StepInfo& info, Latent& x) {
      if (info.index != steps - 2) return;
      for (size_t k = 0; k < n; ++k) {
        double exact = toy.mu + std::sqrt(toy.s0 * toy.s0 + slast * slast) /
                                    std::sqrt(toy.s0 * toy.s0 + smax * smax) * (xT[k] - toy.mu);
        err = std::max(err, std::fabs(x[k] - exact));
      }
    });
    return err;
  };
  double e[3][3];
  const SamplerKind kinds[3] = {SamplerKind::Euler, SamplerKind::DpmPP2M, SamplerKind::DpmPP2MKarras};
  for (int k = 0; k < 3; ++k) {
    for (int j = 0; j < 3; ++j) e[k][j] = err_for(kinds[k], 50 << j);
    MESSAGE(std::string(sampler_cli_name(kinds[k])) << " max error at 50/100/200 steps: " << e[k][0] << " "
                                                    << e[k][1] << " " << e[k][2]);
  }
  // Euler: first order, the error halves with each doubling of the steps.
  CHECK(e[0][1] / e[0][0] == doctest::Approx(0.5).epsilon(0.15));
  CHECK(e[0][2] / e[0][1] == doctest::Approx(0.5).epsilon(0.15));
  // DPM++ 2M on Karras sigmas: second order, the error quarters.
  CHECK(e[2][1] / e[2][0] == doctest::Approx(0.25).epsilon(0.15));
  CHECK(e[2][2] / e[2][1] == doctest::Approx(0.25).epsilon(0.15));
  CHECK(e[2][2] < 5e-4);
  // On the discrete schedule (log-sigma piecewise linear in t, so only approaching order 2)
  // it still beats Euler at every step count and gains more than first order per doubling.
  for (int j = 0; j < 3; ++j) CHECK(e[1][j] < e[0][j]);
  CHECK(e[1][2] / e[1][1] < 0.4);
}

// Independent re-statements of the published rules, in the form the papers / k-diffusion write
// them, compared with the library's samplers on the same model and the same random stream.
TEST_CASE("DPM++ 2M (k-diffusion sample_dpmpp_2m, Lu et al. 2022) matches its published rule") {
  NoiseSchedule s{ScheduleConfig{}};
  for (bool karras : {false, true}) {
    Toy toy{s};
    const int steps = 12;
    auto sampler = Sampler::create(karras ? SamplerKind::DpmPP2MKarras : SamplerKind::DpmPP2M, s, steps);
    std::vector<double> sig = karras ? karras_sigmas(steps, s.sigma_min(), s.sigma_max()) : discrete_sigmas(s, steps);
    Latent x = noise_latent(3, 64, sig[0]);
    TorchRng rng(1);
    Latent got = sampler->run(x, toy.fn(), rng);
    // x_{i+1} = (sigma_{i+1}/sigma_i) x_i - (e^{-h} - 1) D_i' with h = lambda_{i+1} - lambda_i,
    // lambda = -log sigma, D_i' = (1 + 1/2r) D_i - 1/2r D_{i-1}, r = h_{i-1}/h_i.
    auto t_fn = [](double sg) { return -std::log(sg); };
    Latent old;
    for (int i = 0; i < steps; ++i) {
      Latent den(x.size());
      for (size_t k = 0; k < x.size(); ++k) den[k] = toy.denoised(x[k], sig[i]);
      if (sig[i + 1] == 0) {
        x = den;
      } else {
        double t = t_fn(sig[i]), tn = t_fn(sig[i + 1]), h = tn - t;
        for (size_t k = 0; k < x.size(); ++k) {
          double d = den[k];
          if (!old.empty()) {
            double r = (t - t_fn(sig[i - 1])) / h;
            d = (1 + 1 / (2 * r)) * den[k] - (1 / (2 * r)) * old[k];
          }
          x[k] = std::exp(-tn) / std::exp(-t) * x[k] - std::expm1(-h) * d;
        }
      }
      old = den;
    }
    CHECK(rel(got, x) < 1e-9);
  }
}

TEST_CASE("Euler ancestral (k-diffusion sample_euler_ancestral) matches its published rule, same noise") {
  NoiseSchedule s{ScheduleConfig{}};
  Toy toy{s};
  const int steps = 10;
  for (double eta : {1.0, 0.5}) {
    auto sampler = Sampler::create(SamplerKind::EulerAncestral, s, steps, eta);
    auto sig = discrete_sigmas(s, steps);
    Latent x = noise_latent(4, 128, sig[0]);
    TorchRng rng_a(77), rng_b(77);
    Latent got = sampler->run(x, toy.fn(), rng_a);
    for (int i = 0; i < steps; ++i) {
      double sf = sig[i], st = sig[i + 1];
      double up = std::min(st, eta * std::sqrt(st * st * (sf * sf - st * st) / (sf * sf)));
      double down = std::sqrt(st * st - up * up);
      for (size_t k = 0; k < x.size(); ++k) {
        double d = (x[k] - toy.denoised(x[k], sf)) / sf;
        x[k] = x[k] + d * (down - sf);
      }
      if (st > 0) {
        auto z = rng_b.randn((int64_t)x.size());
        for (size_t k = 0; k < x.size(); ++k) x[k] += z[k] * up;
      }
    }
    CHECK(rel(got, x) < 1e-9);
  }
}

TEST_CASE("DDIM with eta and DDPM (Song et al. eq. 12, Ho et al. eqs. 6-7) match their published rules") {
  NoiseSchedule s{ScheduleConfig{}};
  Toy toy{s};
  const int steps = 8;
  auto ts = ddim_timesteps(steps, 1000);
  for (bool ddpm : {false, true}) {
    const double eta = 0.7;
    auto sampler = Sampler::create(ddpm ? SamplerKind::DDPM : SamplerKind::DDIM, s, steps, eta);
    Latent x = noise_latent(6, 128, 1.0);
    TorchRng rng_a(9), rng_b(9);
    Latent got = sampler->run(x, toy.fn(), rng_a);
    for (int i = 0; i < steps; ++i) {
      int t = ts[(size_t)(steps - 1 - i)];
      double at = s.alphas_cumprod(t);
      double ap = i + 1 < steps ? s.alphas_cumprod(ts[(size_t)(steps - 2 - i)]) : (ddpm ? 1.0 : s.alphas_cumprod(0));
      Latent e = toy.eps(x, t);
      Latent z;
      if (ddpm) {
        // Posterior q(x_prev | x_t, x0): mean with beta = 1 - at/ap, variance beta (1-ap)/(1-at).
        double beta = 1 - at / ap, var = beta * (1 - ap) / (1 - at);
        if (var > 0) z = to_d(rng_b.randn((int64_t)x.size()));
        for (size_t k = 0; k < x.size(); ++k) {
          double x0 = (x[k] - std::sqrt(1 - at) * e[k]) / std::sqrt(at);
          double mean = std::sqrt(ap) * beta / (1 - at) * x0 + std::sqrt(1 - beta) * (1 - ap) / (1 - at) * x[k];
          x[k] = mean + (var > 0 ? std::sqrt(var) * z[k] : 0);
        }
      } else {
        double sg = eta * std::sqrt((1 - ap) / (1 - at)) * std::sqrt(1 - at / ap);
        z = to_d(rng_b.randn((int64_t)x.size()));
        for (size_t k = 0; k < x.size(); ++k) {
          double x0 = (x[k] - std::sqrt(1 - at) * e[k]) / std::sqrt(at);
          x[k] = std::sqrt(ap) * x0 + std::sqrt(1 - ap - sg * sg) * e[k] + sg * z[k];
        }
      }
    }
    INFO((ddpm ? "ddpm" : "ddim"));
    CHECK(rel(got, x) < 1e-9);
  }
  // DDIM with eta = 1 uses exactly the DDPM posterior variance: the two agree on every step but
  // the last (DDIM's last step goes to alphas_cumprod[0], DDPM's to the clean latent).
}

TEST_CASE("LCM (Luo et al. 2023, diffusers LCMScheduler) timesteps and rule") {
  NoiseSchedule s{ScheduleConfig{}};
  auto sampler = Sampler::create(SamplerKind::LCM, s, 4);
  REQUIRE(sampler->steps() == 4);
  // diffusers: the 50-step distillation schedule 19, 39, ..., 999 reversed, indices
  // floor(linspace(0, 50, 4, endpoint=False)) = 0, 12, 25, 37.
  std::vector<double> expect_t = {999, 759, 499, 259};
  for (int i = 0; i < 4; ++i) CHECK(sampler->timestep(i) == expect_t[(size_t)i]);
  CHECK_THROWS_AS(Sampler::create(SamplerKind::LCM, s, 51), Error);
  Toy toy{s};
  Latent x = noise_latent(8, 128, 1.0);
  TorchRng rng_a(5), rng_b(5);
  Latent got = sampler->run(x, toy.fn(), rng_a);
  for (int i = 0; i < 4; ++i) {
    double t = expect_t[(size_t)i], at = s.alphas_cumprod((int)t);
    double st = 10 * t, c_skip = 0.25 / (st * st + 0.25), c_out = st / std::sqrt(st * st + 0.25);
    Latent e = toy.eps(x, t), den(x.size());
    for (size_t k = 0; k < x.size(); ++k) den[k] = c_out * (x[k] - std::sqrt(1 - at) * e[k]) / std::sqrt(at) + c_skip * x[k];
    if (i == 3) {
      x = den;
    } else {
      double ap = s.alphas_cumprod((int)expect_t[(size_t)i + 1]);
      auto z = rng_b.randn((int64_t)x.size());
      for (size_t k = 0; k < x.size(); ++k) x[k] = std::sqrt(ap) * den[k] + std::sqrt(1 - ap) * z[k];
    }
  }
  CHECK(rel(got, x) < 1e-9);
}

TEST_CASE("ancestral samplers draw from the data distribution on the Gaussian toy problem") {
  NoiseSchedule s{ScheduleConfig{}};
  Toy toy{s};
  const size_t n = 16384;
  for (auto kind : {SamplerKind::EulerAncestral, SamplerKind::DDPM, SamplerKind::Euler, SamplerKind::DDIM}) {
    auto sampler = Sampler::create(kind, s, 100, kind == SamplerKind::DDIM ? 1.0 : -1);
    Latent x = noise_latent(12, n, sampler->init_noise_scale());
    TorchRng rng(13);
    x = sampler->run(x, toy.fn(), rng);
    double m = 0, v = 0;
    for (double e : x) m += e;
    m /= n;
    for (double e : x) v += (e - m) * (e - m);
    double sd = std::sqrt(v / n);
    INFO(sampler_cli_name(kind) << ": mean " << m << " std " << sd);
    CHECK(m == doctest::Approx(toy.mu).epsilon(0.02));
    CHECK(sd == doctest::Approx(toy.s0).epsilon(0.05));
  }
}

TEST_CASE("img2img start: running from a later step continues the same schedule") {
  NoiseSchedule s{ScheduleConfig{}};
  Toy toy{s};
  for (auto kind : {SamplerKind::DDIM, SamplerKind::Euler, SamplerKind::DpmPP2M}) {
    auto sampler = Sampler::create(kind, s, 10);
    Latent x = noise_latent(2, 64, sampler->init_noise_scale());
    TorchRng rng(0);
    Latent mid;
    int seen = 0;
    Latent full = sampler->run(x, toy.fn(), rng, 0, [&](const StepInfo& info, Latent& xs) {
      if (info.index == 3) mid = xs;
    });
    Latent resumed = sampler->run(mid, toy.fn(), rng, 4, [&](const StepInfo& info, Latent&) {
      CHECK(info.index >= 4);
      ++seen;
    });
    CHECK(seen == 6);
    // DPM++ 2M restarts its history (first-order first step), so only close, not equal.
    CHECK(rel(resumed, full) < (kind == SamplerKind::DpmPP2M ? 1e-2 : 1e-12));
  }
}
