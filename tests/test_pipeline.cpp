// Images in/out, and the whole generation pipeline on the tiny reference checkpoint: DDIM and
// Euler (with and without guidance) must reproduce the CompVis reference run from the seed alone
// (torch-compatible noise), latents step by step and the final image to >= 45 dB; img2img,
// inpainting, emphasis and low-VRAM mode run end to end with exact properties checked.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unistd.h>

#include "runtime/model/checkpoint.h"
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/io/infotext.h"
#include "runtime/nn/unet.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/schedule.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "tests/parity_util.h"
#include "tests/test_util.h"

using namespace vksd;
namespace fs = std::filesystem;

static fs::path temp_dir(const char* what) {
  auto d = fs::temp_directory_path() / ("vksd_" + std::string(what) + "_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// ---- image_io --------------------------------------------------------------------------------

TEST_CASE("png: round trip of gray/RGB/RGBA pixels and text chunks, atomic write") {
  auto dir = temp_dir("png");
  for (int ch : {1, 3, 4}) {
    Image im(37, 23, ch);  // odd sizes: every filter byte and row stride path
    for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = (uint8_t)((i * 131) ^ (i >> 3));
    auto path = (dir / ("t" + std::to_string(ch) + ".png")).string();
    TextChunks text = {{"parameters", "a cat\nNegative prompt: dog\nSteps: 20, Seed: 42"}, {"Software", "vksd"}};
    write_png(path, im, text);
    auto back = read_image(path, ch);
    CHECK(back.width == 37);
    CHECK(back.height == 23);
    CHECK(back.pixels == im.pixels);
    CHECK(read_png_text(path) == text);
  }
  // Nothing but the outputs is left behind (the temp file was renamed).
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.path().extension() == ".png" ? 1 : 100;
  CHECK(files == 3);
  // Errors name the file.
  CHECK_THROWS_WITH_AS(read_image((dir / "missing.png").string()), doctest::Contains("missing.png"), Error);
  {
    std::ofstream(dir / "garbage.png") << "not an image";
  }
  CHECK_THROWS_WITH_AS(read_image((dir / "garbage.png").string()), doctest::Contains("garbage.png"), Error);
  CHECK_THROWS_AS(write_png((dir / "no/such/dir/x.png").string(), Image(2, 2, 3)), Error);
  CHECK(!fs::exists(dir / "no"));
  fs::remove_all(dir);
}

TEST_CASE("png: tensor_to_image follows the reference u8 rule (reference PNGs)") {
  REQUIRE_SHARED();
  for (const char* name : {"ddim_final_image", "vae_dec_out", "vae_enc_in"}) {
    auto t = test::load_npy(test::vectors_dir() + "/" + name + ".npy");
    auto im = tensor_to_image(t.data.data(), 3, (int)t.shape[2], (int)t.shape[3]);
    auto ref = read_image(test::vectors_dir() + "/" + name + "_u8.png", 3);
    INFO(name);
    CHECK(im.pixels == ref.pixels);
  }
}

// ---- the pipeline ----------------------------------------------------------------------------

static PipelineOptions tiny_options(bool fp32 = true, bool lowvram = false) {
  PipelineOptions o;
  o.model_path = test::vectors_dir() + "/model.safetensors";  // model.json beside it is its config
  o.vocab_path = test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz";
  o.fp32 = fp32;
  o.lowvram = lowvram;
  return o;
}

static const char* kPrompt = "a photograph of an astronaut riding a horse";

using test::psnr;

static std::vector<float> npy(const std::string& name) { return test::load_npy(test::vectors_dir() + "/" + name + ".npy").data; }
static std::vector<float> to_f(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Records every step's tensors.
struct Recorder : Observer {
  struct Step {
    int index;
    double t, sigma;
    std::vector<float> x, denoised, eps, eps_cond, eps_uncond;
    bool has_uncond;
  };
  std::vector<Step> steps;
  std::vector<std::string> stages;
  void on_stage(const std::string& s) override { stages.push_back(s); }
  void on_step(const StepEvent& e) override {
    steps.push_back({e.index, e.t, e.sigma, to_f(*e.x), to_f(*e.denoised), to_f(*e.eps), *e.eps_cond,
                     e.eps_uncond ? *e.eps_uncond : std::vector<float>{}, e.eps_uncond != nullptr});
    CHECK(e.step_ms >= 0);
    CHECK(e.channels == 4);
    CHECK(e.height == 16);
    CHECK(e.width == 16);
  }
};

static GenerateParams tiny_params(SamplerKind s, double cfg) {
  GenerateParams p;
  p.prompt = kPrompt;
  p.negative_prompt = "";
  p.width = p.height = 32;
  p.steps = 4;
  p.cfg_scale = cfg;
  p.sampler = s;
  p.seed = 42;
  return p;
}

// Latent tolerance per step: each step's UNet output matches the reference to ~1e-5 relative
// in fp32; errors compound mildly over 4 steps.
constexpr double kLatentTol = 1e-4;

TEST_CASE("pipeline: DDIM 4 steps CFG 7.5 from seed 42 reproduces the reference run") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), tiny_options());
  CHECK(pipe.size_multiple() == 4);
  // The conditioning itself.
  auto hidden = npy("text_hidden");
  auto cond = pipe.encode_prompt(kPrompt, 1);
  CHECK(test::rel_l2(cond, std::vector<float>(hidden.begin(), hidden.begin() + 77 * 64)) < 1e-5);
  auto empty = pipe.encode_prompt("", 1);
  CHECK(test::rel_l2(empty, std::vector<float>(hidden.begin() + 2 * 77 * 64, hidden.end())) < 1e-5);

  Recorder rec;
  auto res = pipe.generate(tiny_params(SamplerKind::DDIM, 7.5), &rec);
  REQUIRE(rec.steps.size() == 4);
  for (int i = 0; i < 4; ++i) {
    const auto& s = rec.steps[(size_t)i];
    const std::string k = "ddim_step" + std::to_string(i);
    INFO("step " << i);
    CHECK(s.t == npy(k + "_t")[0]);
    CHECK(s.has_uncond);
    CHECK(test::rel_l2(s.eps_uncond, npy(k + "_eps_uncond")) < kLatentTol);
    CHECK(test::rel_l2(s.eps_cond, npy(k + "_eps_cond")) < kLatentTol);
    CHECK(test::rel_l2(s.denoised, npy(k + "_pred_x0")) < kLatentTol);
    CHECK(test::rel_l2(s.x, npy(k + "_x_prev")) < kLatentTol);
  }
  CHECK(test::rel_l2(res.latent, npy("ddim_final_latent")) < kLatentTol);
  const double db = psnr(res.pixels, npy("ddim_final_image"));
  MESSAGE("DDIM final image PSNR " << db << " dB");
  CHECK(db >= 45.0);
  CHECK(res.steps_run == 4);
  // A1111's infotext: Model hash = the first 10 hex digits of the checkpoint file's SHA-256.
  const std::string hash = sha256_file(test::vectors_dir() + "/model.safetensors").substr(0, 10);
  CHECK(res.parameters == std::string(kPrompt) + "\nSteps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 32x32, Model hash: " +
                              hash + ", Model: model, RNG: CPU");
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("pipeline: Euler 4 steps, CFG 7.5 and no CFG, reproduce the reference runs") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), tiny_options());
  for (double cfg : {7.5, 1.0}) {
    const std::string prefix = cfg == 1.0 ? "euler_nocfg" : "euler";
    Recorder rec;
    auto res = pipe.generate(tiny_params(SamplerKind::Euler, cfg), &rec);
    REQUIRE(rec.steps.size() == 4);
    auto ts = npy("euler_timesteps"), sig = npy("euler_sigmas");
    for (int i = 0; i < 4; ++i) {
      const auto& s = rec.steps[(size_t)i];
      const std::string k = prefix + "_step" + std::to_string(i);
      INFO(prefix << " step " << i);
      CHECK(s.t == doctest::Approx(ts[(size_t)i]).scale(1.0).epsilon(1e-5));
      CHECK(s.sigma == doctest::Approx(sig[(size_t)i]).epsilon(1e-6));
      CHECK(s.has_uncond == (cfg != 1.0));  // no CFG: one batch-1 UNet pass, no uncond
      CHECK(test::rel_l2(s.eps, npy(k + "_eps")) < kLatentTol);
      CHECK(test::rel_l2(s.denoised, npy(k + "_denoised")) < kLatentTol);
      CHECK(test::rel_l2(s.x, npy(k + "_x")) < kLatentTol);
    }
    CHECK(test::rel_l2(res.latent, npy(prefix + "_final_latent")) < kLatentTol);
    const double db = psnr(res.pixels, npy(prefix + "_final_image"));
    MESSAGE(prefix << " final image PSNR " << db << " dB");
    CHECK(db >= 45.0);
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("pipeline: low-VRAM mode gives the same image and fp16 storage stays close") {
  REQUIRE_SHARED();
  auto p = tiny_params(SamplerKind::Euler, 7.5);
  p.steps = 2;
  std::vector<float> ref_latent;
  {
    SdPipeline pipe(test::ctx(), tiny_options(true, false));
    ref_latent = pipe.generate(p).latent;
  }
  {
    SdPipeline pipe(test::ctx(), tiny_options(true, true));
    Recorder rec;
    auto res = pipe.generate(p, &rec);
    CHECK(res.latent == ref_latent);  // same kernels, same order: bit-identical
  }
  if (test::ctx().info().fp16) {
    SdPipeline pipe(test::ctx(), tiny_options(false, false));
    CHECK(pipe.dtype() == DType::F16);
    auto res = pipe.generate(p);
    double rel = test::rel_l2(res.latent, ref_latent);
    MESSAGE("fp16 storage vs fp32, Euler 2 steps CFG 7.5: latent rel L2 " << rel);
    CHECK(rel < 2e-2);
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("pipeline: prompt emphasis scales token states and restores the mean") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), tiny_options());
  auto plain = pipe.encode_prompt(kPrompt, 1);
  auto emph = pipe.encode_prompt("a (photograph:1.5) of an astronaut riding a [horse]", 1);
  REQUIRE(plain.size() == emph.size());
  // Tokens: BOS a photograph of an astronaut riding a horse EOS ...; weights 1.5 at index 2 and
  // 1/1.1 at index 8. emph = k * w_i * plain with one k for the whole chunk, and equal means.
  double mp = 0, me = 0;
  for (size_t i = 0; i < plain.size(); ++i) mp += plain[i], me += emph[i];
  CHECK(me == doctest::Approx(mp).epsilon(1e-4));
  const size_t D = 64;
  double k = emph[0] / (double)plain[0];  // BOS row, weight 1
  for (size_t tok = 0; tok < 77; ++tok) {
    double w = tok == 2 ? 1.5 : tok == 8 ? 1 / 1.1 : 1.0;
    for (size_t d = 0; d < D; d += 13)
      CHECK(emph[tok * D + d] == doctest::Approx(k * w * plain[tok * D + d]).epsilon(1e-5));
  }
  CHECK(k != 1.0);
}

TEST_CASE("pipeline: img2img and inpainting run end to end") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), tiny_options());
  // The VAE posterior mean through the pipeline equals the reference encoder output.
  auto enc_ref = npy("vae_enc_mean_scaled");
  CHECK(test::rel_l2(pipe.encode_image(npy("vae_enc_in"), 32, 32), enc_ref) < 1e-4);

  auto init = read_image(test::vectors_dir() + "/vae_enc_in_u8.png", 3);
  auto init_latent = pipe.encode_image(image_to_tensor(init), 32, 32);
  auto p = tiny_params(SamplerKind::DDIM, 7.5);
  p.init_image = init;

  // strength 0: no step runs and the latent is the encoded image itself.
  p.strength = 0;
  {
    Recorder rec;
    auto res = pipe.generate(p, &rec);
    CHECK(rec.steps.empty());
    CHECK(res.steps_run == 0);
    CHECK(res.latent == init_latent);
  }
  // strength 0.5 of 4 DDIM steps: the last two (t = 251, 1).
  p.strength = 0.5;
  {
    Recorder rec;
    auto res = pipe.generate(p, &rec);
    REQUIRE(rec.steps.size() == 2);
    CHECK(rec.steps[0].index == 2);
    CHECK(rec.steps[0].t == 251);
    CHECK(rec.steps[1].t == 1);
    for (float v : res.pixels) REQUIRE(std::isfinite(v));
    CHECK(res.parameters.find("Denoising strength: 0.5") != std::string::npos);
  }
  // Inpainting with an ordinary 4-channel UNet: repaint the left half. After the last step the
  // kept region is the init latent exactly; the repainted region is not.
  Image mask(32, 32, 1);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 16; ++x) mask.at(x, y)[0] = 255;
  p.mask = mask;
  p.strength = 1.0;
  p.sampler = SamplerKind::Euler;
  {
    Recorder rec;
    auto res = pipe.generate(p, &rec);
    CHECK(rec.steps.size() == 4);
    double kept_diff = 0, painted_diff = 0;
    for (int c = 0; c < 4; ++c)
      for (int y = 0; y < 16; ++y)
        for (int x = 0; x < 16; ++x) {
          size_t k = ((size_t)c * 16 + y) * 16 + x;
          double d = std::fabs(res.latent[k] - init_latent[k]);
          (x < 8 ? painted_diff : kept_diff) += d;
        }
    CHECK(kept_diff == 0.0);
    CHECK(painted_diff > 1.0);
  }
  // Bad inputs are named.
  p.mask = Image(16, 16, 1);
  CHECK_THROWS_WITH_AS(pipe.generate(p), doctest::Contains("mask is 16x16"), Error);
  p.mask.reset();
  p.width = 30;
  CHECK_THROWS_WITH_AS(pipe.generate(p), doctest::Contains("multiples of 4"), Error);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("pipeline: an observer can cancel between steps") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), tiny_options());
  struct Cancel : Observer {
    int steps = 0;
    void on_step(const StepEvent&) override { ++steps; }
    bool cancelled() override { return steps >= 1; }
  } obs;
  CHECK_THROWS_WITH_AS(pipe.generate(tiny_params(SamplerKind::Euler, 1.0), &obs), doctest::Contains("cancelled"), Error);
  CHECK(obs.steps == 1);
  // The pipeline is still usable afterwards.
  auto res = pipe.generate(tiny_params(SamplerKind::Euler, 1.0));
  CHECK(test::rel_l2(res.latent, npy("euler_nocfg_final_latent")) < kLatentTol);
  CHECK(test::ctx().validation_messages() == 0);
}

// ---- 9-channel inpainting UNet ---------------------------------------------------------------
// No such reference model exists at tiny size, so make one from the tiny checkpoint: conv_in
// widened to 9 input channels [x (4), mask (1), masked-image latent (4)] with chosen weights.
// With the extra weights zero it IS the 4-channel UNet; with x's weights moved to the masked-
// image latent (and a copy on the mask) its output is the 4-channel UNet's output on a known
// input, which checks the mask and latent layout the pipeline feeds.
static void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, test::Npy>>& tensors) {
  std::string header = "{";
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    std::string shape;
    for (auto d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const size_t bytes = t.data.size() * 4;
    header += (header.size() > 1 ? "," : "") + std::string("\"") + name + "\":{\"dtype\":\"F32\",\"shape\":[" + shape +
              "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(header.data(), (std::streamsize)header.size());
  for (const auto& [name, t] : tensors) f.write(reinterpret_cast<const char*>(t.data.data()), (std::streamsize)(t.data.size() * 4));
}

TEST_CASE("pipeline: 9-channel inpainting UNet gets [x, mask, masked-image latent]") {
  REQUIRE_SHARED();
  auto dir = temp_dir("inpaint9");
  const std::string conv_in = std::string(kUNetPrefix) + "input_blocks.0.0.weight";
  auto src = Checkpoint::open(test::vectors_dir() + "/model.safetensors");
  auto w4 = src.read_f32(conv_in);  // [32, 4, 3, 3]
  const int oc = 32, k = 9;
  // variant 0: 9-ch weights = [W, 0, 0]; variant 1: [0, W[:,0], W] (x ignored).
  auto make = [&](int variant) {
    std::vector<std::pair<std::string, test::Npy>> ts;
    for (const auto& name : src.tensor_names()) {
      test::Npy t;
      t.shape = src.shape(name);
      t.data = src.read_f32(name);
      if (name == conv_in) {
        t.shape = {oc, 9, 3, 3};
        t.data.assign((size_t)oc * 9 * k, 0.f);
        for (int o = 0; o < oc; ++o)
          for (int c = 0; c < 4; ++c)
            for (int j = 0; j < k; ++j) {
              float w = w4[((size_t)o * 4 + c) * k + j];
              if (variant == 0) t.data[((size_t)o * 9 + c) * k + j] = w;
              else t.data[((size_t)o * 9 + 5 + c) * k + j] = w;
              if (variant == 1 && c == 0) t.data[((size_t)o * 9 + 4) * k + j] = w;
            }
      }
      ts.emplace_back(name, std::move(t));
    }
    auto path = (dir / ("inpaint" + std::to_string(variant) + ".safetensors")).string();
    write_safetensors(path, ts);
    return path;
  };
  const std::string cfg_json = R"({"unet": {"num_heads": 2}, "text_encoder": {"heads": 2}})";
  auto opts9 = [&](const std::string& path) {
    auto o = tiny_options();
    o.model_path = path;
    o.config_json = cfg_json;
    return o;
  };
  auto init = read_image(test::vectors_dir() + "/vae_enc_in_u8.png", 3);
  Image mask(32, 32, 1);
  for (int y = 4; y < 20; ++y)
    for (int x = 8; x < 30; ++x) mask.at(x, y)[0] = 255;
  auto p = tiny_params(SamplerKind::Euler, 1.0);
  p.init_image = init;
  p.strength = 1.0;

  // Variant 0 equals plain img2img with the 4-channel model (no blending for 9-ch models).
  std::vector<float> ref_latent;
  {
    SdPipeline pipe4(test::ctx(), tiny_options());
    ref_latent = pipe4.generate(p).latent;
  }
  {
    SdPipeline pipe9(test::ctx(), opts9(make(0)));
    CHECK(pipe9.config().unet.in_channels == 9);
    auto q = p;
    q.mask = mask;
    CHECK(test::rel_l2(pipe9.generate(q).latent, ref_latent) < 1e-5);
    q.mask.reset();
    CHECK_THROWS_WITH_AS(pipe9.generate(q), doctest::Contains("inpainting model"), Error);
  }
  // Variant 1: the first step's UNet output must be UNet4(masked latent + mask on channel 0).
  {
    SdPipeline pipe9(test::ctx(), opts9(make(1)));
    auto q = p;
    q.mask = mask;
    q.steps = 1;
    Recorder rec;
    pipe9.generate(q, &rec);
    REQUIRE(rec.steps.size() == 1);
    // Expected input: the latent of the image with the repaint region zeroed (grey) ...
    auto img = image_to_tensor(init);
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x)
        if (mask.at(x, y)[0] >= 128)
          for (int c = 0; c < 3; ++c) img[((size_t)c * 32 + y) * 32 + x] = 0.f;
    auto masked = pipe9.encode_image(img, 32, 32);
    // ... plus the mask at latent resolution (nearest: the top-left pixel of each 2x2 block).
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) masked[(size_t)y * 16 + x] += mask.at(2 * x, 2 * y)[0] >= 128 ? 1.f : 0.f;
    auto w = load_weights(test::ctx(), src, kUNetPrefix, DType::F32);
    nn::UNet unet(test::ctx(), *w, src.config().unet, 1, 16, 16);
    unet.set_context(pipe9.encode_prompt(kPrompt, 1));
    auto expect = unet.forward(masked, {(float)rec.steps[0].t});
    CHECK(test::rel_l2(rec.steps[0].eps_cond, expect) < 1e-5);
  }
  fs::remove_all(dir);
  CHECK(test::ctx().validation_messages() == 0);
}
