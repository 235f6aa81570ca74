// Timestep spacing (leading / trailing / linspace) and one-step generation as SD-Turbo uses it.
// Expected timesteps are diffusers' set_timesteps formulas evaluated by hand for T = 1000 (the
// values its schedulers print, e.g. SD-Turbo's 4-step run visits 999, 749, 499, 249).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/rng.h"
#include "runtime/diffusion/samplers.h"
#include "runtime/diffusion/schedule.h"
#include "runtime/error.h"
#include "tests/test_util.h"

using namespace vksd;

TEST_CASE("timestep spacing: leading, trailing and linspace timesteps as diffusers computes them") {
  using V = std::vector<double>;
  CHECK(spaced_timesteps(TimestepSpacing::Trailing, 1, 1000) == V{999});
  CHECK(spaced_timesteps(TimestepSpacing::Trailing, 4, 1000) == V{999, 749, 499, 249});
  CHECK(spaced_timesteps(TimestepSpacing::Trailing, 3, 1000) == V{999, 666, 332});  // round(1000 - k*333.3) - 1
  CHECK(spaced_timesteps(TimestepSpacing::Leading, 4, 1000, 1) == V{751, 501, 251, 1});
  CHECK(spaced_timesteps(TimestepSpacing::Leading, 3, 1000) == V{666, 333, 0});  // ratio 1000 div 3 = 333
  CHECK(spaced_timesteps(TimestepSpacing::Linspace, 4, 1000) == V{999, 666, 333, 0});
  CHECK(spaced_timesteps(TimestepSpacing::Linspace, 3, 1000) == V{999, 499.5, 0});
  // Every step count visits distinct, strictly decreasing timesteps inside [0, T-1].
  for (auto sp : {TimestepSpacing::Leading, TimestepSpacing::Trailing, TimestepSpacing::Linspace})
    for (int n : {1, 2, 7, 50, 999}) {
      auto ts = spaced_timesteps(sp, n, 1000, 1);
      REQUIRE(ts.size() == (size_t)n);
      CHECK(ts.front() <= 999);
      CHECK(ts.back() >= 0);
      for (size_t i = 1; i < ts.size(); ++i) CHECK(ts[i] < ts[i - 1]);
    }
  CHECK(spaced_timesteps(TimestepSpacing::Leading, 1000, 1000).front() == 999);
  CHECK_THROWS_WITH_AS(spaced_timesteps(TimestepSpacing::Leading, 1000, 1000, 1), doctest::Contains("at most 999 steps"), Error);
  CHECK_THROWS_WITH_AS(spaced_timesteps(TimestepSpacing::Trailing, 1001, 1000), doctest::Contains("steps must be <= 1000"),
                       Error);
  CHECK(parse_timestep_spacing("trailing") == TimestepSpacing::Trailing);
  CHECK(parse_timestep_spacing("") == TimestepSpacing::Default);
  CHECK_THROWS_WITH_AS(parse_timestep_spacing("uniform"), doctest::Contains("valid: default, leading, trailing, linspace"),
                       Error);
}

TEST_CASE("timestep spacing: samplers visit the spaced timesteps, Karras and LCM refuse one") {
  NoiseSchedule s{ScheduleConfig{}};
  auto euler = Sampler::create(SamplerKind::Euler, s, 4, -1, TimestepSpacing::Trailing);
  REQUIRE(euler->steps() == 4);
  const double expect_t[4] = {999, 749, 499, 249};
  for (int i = 0; i < 4; ++i) {
    CHECK(euler->timestep(i) == doctest::Approx(expect_t[i]).epsilon(1e-9));
    CHECK(euler->sigma_at(i) == doctest::Approx(s.sigma((int)expect_t[i])).epsilon(1e-12));
  }
  CHECK(euler->sigma_at(0) == doctest::Approx(s.sigma_max()).epsilon(1e-12));
  CHECK(euler->level(4).noise == 0.0);
  auto ddim = Sampler::create(SamplerKind::DDIM, s, 4, -1, TimestepSpacing::Leading, 1);
  for (int i = 0; i < 4; ++i) CHECK(ddim->timestep(i) == 751 - 250 * i);
  // Default DDIM stays LDM's uniform timesteps (reference parity depends on it).
  auto ddim_ref = Sampler::create(SamplerKind::DDIM, s, 4);
  for (int i = 0; i < 4; ++i) CHECK(ddim_ref->timestep(i) == 751 - 250 * i);
  CHECK_THROWS_WITH_AS(Sampler::create(SamplerKind::DpmPP2MKarras, s, 4, -1, TimestepSpacing::Trailing),
                       doctest::Contains("does not apply to dpm++2m_karras"), Error);
  CHECK_THROWS_WITH_AS(Sampler::create(SamplerKind::LCM, s, 4, -1, TimestepSpacing::Linspace),
                       doctest::Contains("does not apply to lcm"), Error);
}

// With a perfect noise predictor, a one-step trailing run (t = 999, pure noise) lands on the
// clean latent in one model call: the SD-Turbo use. Both families, epsilon and v models.
TEST_CASE("timestep spacing: one trailing step with an exact predictor gives the clean latent") {
  for (const char* pred : {"epsilon", "v_prediction"}) {
    ScheduleConfig sc;
    sc.prediction_type = pred;
    NoiseSchedule s{sc};
    const size_t n = 64;
    Latent x0(n), eps(n);
    TorchRng src(3);
    auto a = src.randn((int64_t)n), b = src.randn((int64_t)n);
    for (size_t k = 0; k < n; ++k) x0[k] = 0.5 * a[k], eps[k] = b[k];
    for (SamplerKind kind : {SamplerKind::Euler, SamplerKind::EulerAncestral, SamplerKind::DpmPP2M, SamplerKind::DDIM,
                             SamplerKind::DDPM}) {
      auto sampler = Sampler::create(kind, s, 1, 0.0, TimestepSpacing::Trailing);
      REQUIRE(sampler->steps() == 1);
      CHECK(sampler->timestep(0) == 999);
      // The start latent at level(0): signal * x0 + noise * eps (k-diffusion: x0 + sigma eps).
      const NoiseLevel l0 = sampler->level(0);
      Latent x(n);
      for (size_t k = 0; k < n; ++k) x[k] = l0.signal * x0[k] + l0.noise * eps[k];
      int calls = 0;
      // The model sees x_in = sqrt(a) x0 + sqrt(1-a) eps; it answers eps or v exactly.
      ModelFn model = [&](const Latent& x_in, double t) {
        ++calls;
        const double ac = s.alphas_cumprod((int)std::lround(t));
        Latent out(n);
        for (size_t k = 0; k < n; ++k) {
          CHECK(x_in[k] == doctest::Approx(std::sqrt(ac) * x0[k] + std::sqrt(1 - ac) * eps[k]).epsilon(1e-9));
          out[k] = std::string(pred) == "epsilon" ? eps[k] : std::sqrt(ac) * eps[k] - std::sqrt(1 - ac) * x0[k];
        }
        return out;
      };
      TorchRng rng(1);
      Latent out = sampler->run(x, model, rng);
      CHECK(calls == 1);
      const NoiseLevel end = sampler->level(1);  // DDIM ends at alphas_cumprod[0], not exactly clean (LDM)
      double worst = 0;
      for (size_t k = 0; k < n; ++k) worst = std::max(worst, std::fabs(out[k] - (end.signal * x0[k] + end.noise * eps[k])));
      INFO(sampler_cli_name(kind) << " " << pred);
      CHECK(worst < 1e-9);
    }
  }
}

namespace {
// The demo model's own config with `schedule_extra` added to its "schedule" section.
std::string demo_config_with(const std::string& schedule_extra) {
  std::ifstream f(std::filesystem::path(test::demo_model_path()).parent_path() / "model.json");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string json = ss.str();
  const std::string key = "\"schedule\": {";
  const size_t at = json.find(key);
  REQUIRE(at != std::string::npos);
  json.insert(at + key.size(), schedule_extra + ",");
  return json;
}
}  // namespace

TEST_CASE("timestep spacing: the model config's default, overridden per run") {
  PipelineOptions o;
  o.model_path = test::demo_model_path();
  o.config_json = demo_config_with(R"("timestep_spacing": "trailing")");
  SdPipeline pipe(test::ctx(), o);
  CHECK(pipe.config().schedule.timestep_spacing == "trailing");
  GenerateParams p;
  p.sampler = SamplerKind::Euler;
  p.steps = 1;
  CHECK(pipe.make_sampler(p)->timestep(0) == doctest::Approx(999));
  p.spacing = TimestepSpacing::Linspace;  // an explicit choice wins over the config's
  p.steps = 3;
  CHECK(pipe.make_sampler(p)->timestep(1) == doctest::Approx(499.5));
  p.spacing = TimestepSpacing::Default;   // Karras chooses its own steps: the config's does not apply
  p.sampler = SamplerKind::DpmPP2MKarras;
  CHECK_NOTHROW(pipe.make_sampler(p));

  // A one-step trailing run calls the UNet once, at t = 999, and gives a finite image.
  p.sampler = SamplerKind::Euler;
  p.steps = 1;
  p.cfg_scale = 1;
  p.width = p.height = 64;
  p.prompt = "grinning face";
  struct Steps : Observer {
    std::vector<double> ts;
    void on_step(const StepEvent& e) override { ts.push_back(e.t); }
  } seen;
  GenerateResult r = pipe.generate(p, &seen);
  REQUIRE(seen.ts.size() == 1);
  CHECK(seen.ts[0] == doctest::Approx(999));
  CHECK(r.steps_run == 1);
  REQUIRE(r.pixels.size() == (size_t)3 * 64 * 64);
  for (float v : r.pixels) REQUIRE(std::isfinite(v));

  PipelineOptions bad = o;
  bad.config_json = demo_config_with(R"("timestep_spacing": "uniform")");
  CHECK_THROWS_WITH_AS(SdPipeline(test::ctx(), bad), doctest::Contains("timestep_spacing 'uniform'"), Error);
}

TEST_CASE("cli generate: --timestep-spacing trailing runs one step, a bad name is refused") {
  REQUIRE_MESSAGE(!test::vksd_binary().empty(), "the vksd binary was not built");
  const auto dir = std::filesystem::temp_directory_path() / ("vksd_spacing_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string out = (dir / "one.png").string();
  auto ok = test::run_vksd("generate -p 'grinning face' --steps 1 --cfg-scale 1 --sampler euler --timestep-spacing trailing -o " +
                           test::shell_quote(out));
  INFO(ok.out);
  CHECK(ok.code == 0);
  CHECK(std::filesystem::exists(out));
  const std::string out2 = (dir / "two.png").string();
  auto bad = test::run_vksd("generate -p x --timestep-spacing uniform -o " + test::shell_quote(out2));
  CHECK(bad.code != 0);
  CHECK(bad.out.find("unknown timestep spacing 'uniform'") != std::string::npos);
  CHECK(!std::filesystem::exists(out2));
  std::filesystem::remove_all(dir);
}
