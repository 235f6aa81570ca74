// SDXL end to end: SdPipeline::generate on the sdxl-tiny checkpoint with the reference's settings
// (prompt 0, empty negative prompt = zeroed unconditional text, seed 42, 4 Euler steps, CFG 7.5,
// 32 x 32, the reference's size conditioning) against sgm's EulerEDMSampler run made by the
// ORIGINAL SDXL code: every step's UNet input, denoised and latent, the final latent and the
// decoded image, at fp32 relative L2 <= 1e-5. The noise is the seed's (vksd's torch-compatible
// CPU generator gives euler_noise exactly), the schedule the family's (trailing spacing, x_T =
// noise * sqrt(1 + sigma_0^2)). Then the same through `vksd generate` (the PNG against the
// reference's u8 rendering) and the size-conditioning flags' errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/rng.h"
#include "runtime/io/image_io.h"
#include "tests/sdxl_tiny.h"

using namespace vksd;
using namespace vksd::test::sdxl_tiny;
namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-5;

struct StepRecorder : Observer {
  struct Step {
    double t = 0, sigma = 0;
    std::vector<float> x, x_in, denoised;
  };
  std::vector<Step> steps;
  void on_step(const StepEvent& e) override {
    auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
    steps.push_back({e.t, e.sigma, f(*e.x), *e.x_in, f(*e.denoised)});
  }
};

GenerateParams reference_params() {
  GenerateParams p;
  p.prompt = prompts().at(0);
  p.negative_prompt = "";
  p.width = p.height = 32;
  p.steps = 4;
  p.cfg_scale = 7.5;
  p.sampler = SamplerKind::Euler;
  p.seed = 42;
  const SdxlSizeConditioning s = reference_sizes();
  p.original_width = s.original_w, p.original_height = s.original_h;
  p.crop_top = s.crop_top, p.crop_left = s.crop_left;
  p.target_width = s.target_w, p.target_height = s.target_h;
  return p;
}

}  // namespace

TEST_CASE("sdxl-tiny: SdPipeline::generate reproduces sgm's Euler run step by step (seed 42, CFG 7.5, sizes)") {
  REQUIRE_SHARED();
  // The seed's noise is the reference's (so no noise has to be fed in).
  CHECK(test::max_abs_diff(TorchRng(42).randn(4 * 16 * 16), arr("euler_noise")) == 0);
  SdPipeline pipe(test::ctx(), pipeline_options());
  StepRecorder rec;
  const GenerateResult res = pipe.generate(reference_params(), &rec);
  REQUIRE(rec.steps.size() == 4);
  const test::Npy ts = vec("euler_timesteps"), sig = vec("euler_sigmas");
  double worst = 0;
  for (int i = 0; i < 4; ++i) {
    const std::string k = "euler_step" + std::to_string(i);
    CHECK(rec.steps[(size_t)i].t == doctest::Approx(ts.data[(size_t)i]).epsilon(1e-9));
    CHECK(rec.steps[(size_t)i].sigma == doctest::Approx(sig.data[(size_t)i]).epsilon(1e-6));
    // The UNet input x / sqrt(1 + sigma^2): at step 0 this is where x_T's sgm scaling shows.
    worst = std::max(worst, test::check_close(k + "_unet_in", DType::F32, rec.steps[(size_t)i].x_in, arr(k + "_unet_in"), kTol));
    worst = std::max(worst, test::check_close(k + "_denoised", DType::F32, rec.steps[(size_t)i].denoised, arr(k + "_denoised"), kTol));
    worst = std::max(worst, test::check_close(k + "_x", DType::F32, rec.steps[(size_t)i].x, arr(k + "_x"), kTol));
  }
  worst = std::max(worst, test::check_close("euler_final_latent", DType::F32, res.latent, arr("euler_final_latent"), kTol));
  worst = std::max(worst, test::check_close("euler_final_image", DType::F32, res.pixels, arr("euler_final_image"), kTol));
  MESSAGE("SDXL generate vs sgm: worst rel L2 " << worst);
  // PNG metadata stays A1111's: no SDXL-only keys.
  CHECK(res.parameters.find("Size: 32x32") != std::string::npos);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("sdxl-tiny: vksd generate writes the reference's image, the size-conditioning flags are checked") {
  REQUIRE_SHARED();
  const fs::path dir = fs::temp_directory_path() / ("vksd_sdxl_cli_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "cfg.json") << config_json();
  const SdxlSizeConditioning s = reference_sizes();
  const std::string common = "generate -m " + test::shell_quote(sdxl_model()) + " --config " +
                             test::shell_quote((dir / "cfg.json").string()) + " --vocab " +
                             test::shell_quote(test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz") +
                             " -p " + test::shell_quote(prompts().at(0)) +
                             " -W 32 -H 32 --steps 4 --sampler euler --cfg-scale 7.5 -s 42 --fp32";
  const std::string sizes = " --original-size " + std::to_string(s.original_w) + "x" + std::to_string(s.original_h) +
                            " --crop-coords " + std::to_string(s.crop_top) + "," + std::to_string(s.crop_left) +
                            " --target-size " + std::to_string(s.target_w) + "x" + std::to_string(s.target_h);
  const std::string out = (dir / "out.png").string();
  auto r = test::run_vksd(common + sizes + " -o " + test::shell_quote(out));
  REQUIRE_MESSAGE(r.code == 0, r.out);
  const Image got = read_image(out), ref = read_image(test::vector_set_dir(kSet) + "/euler_final_image_u8.png");
  REQUIRE(got.pixels.size() == ref.pixels.size());
  int worst = 0;
  for (size_t i = 0; i < got.pixels.size(); ++i) worst = std::max(worst, std::abs((int)got.pixels[i] - (int)ref.pixels[i]));
  MESSAGE("vksd generate (SDXL) vs the reference PNG: max difference " << worst << " levels");
  CHECK(worst <= 1);  // the u8 rendering's rounding of values within 1e-5 of each other
  // The default size conditioning (the image size, crop 0,0) is another image.
  const std::string plain = (dir / "plain.png").string();
  r = test::run_vksd(common + " -o " + test::shell_quote(plain));
  REQUIRE(r.code == 0);
  CHECK(read_image(plain).pixels != got.pixels);
  // Malformed flags: named, nothing written.
  for (const char* bad : {" --original-size 1024", " --target-size 0x5", " --crop-coords -1,0", " --crop-coords 3x4"}) {
    CAPTURE(bad);
    const std::string o = (dir / "bad.png").string();
    r = test::run_vksd(common + bad + " -o " + test::shell_quote(o));
    CHECK(r.code != 0);
    CHECK(r.out.find(std::string(bad).substr(1, std::string(bad).find(' ', 1) - 1)) != std::string::npos);
    CHECK_FALSE(fs::exists(o));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}
