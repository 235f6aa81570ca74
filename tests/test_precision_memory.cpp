// Which precision each network runs in (runtime/diffusion/precision_plan.h) and the memory
// estimate for SDXL at 1024 x 1024 (runtime/diffusion/memory_budget.h).
//
// Real SDXL VAE overflow cannot be reproduced with random weights, so the policy is tested two
// ways: as data (SDXL's family -> fp32 VAE activations, SD 1.x unchanged, --vae-fp16 and --fp32
// override), and end to end on the demo model with its VAE decoder's first convolutions scaled
// up so that activations pass fp16's 65504: fp16 activations give NaN (caught by the finite
// check naming the VAE decoder) or, where the driver saturates (lavapipe), an image 0.4 away in
// relative L2 from the fp32-activation one, while the unscaled VAE agrees to < 1e-2.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "runtime/diffusion/memory_budget.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/precision_plan.h"
#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/memory.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/model_config.h"
#include "runtime/model/network_prefixes.h"
#include "runtime/model/random_sdxl_checkpoint.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/safetensors_writer.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/model_family.h"
#include "runtime/model/sdxl_family.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

// The SDXL family's data as the loader applies it (the one place that names the family API).
ModelConfig sdxl_family_config() {
  ModelConfig c;
  apply_family_defaults(c, ModelFamily::SDXL);
  return c;
}

// The demo model's own config (model.json) with `vae_extra` added to its "vae" section.
std::string demo_config_with(const std::string& demo_file, const std::string& vae_extra) {
  std::ifstream f(std::filesystem::path(demo_file).parent_path() / "model.json");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string t = ss.str();
  const size_t at = t.find("\"vae\": {");
  REQUIRE(at != std::string::npos);
  return t.insert(at + 8, vae_extra + ", ");
}

std::string demo_file() {
  std::string d = test::demo_model_path();
  return std::filesystem::is_directory(d) ? d + "/model.safetensors" : d;
}

uint64_t f16_bytes(const std::vector<TensorSpec>& specs) { return 2 * (uint64_t)parameter_count(specs); }

}  // namespace

TEST_CASE("precision plan: SDXL's VAE keeps fp32 activations (fp16 weights), SD 1.x runs all fp16, --vae-fp16, --fp32") {
  const ModelConfig sd1;
  PrecisionPlan p = precision_plan(sd1, DType::F16, false);
  for (const NetPrecision* n : {&p.text, &p.unet, &p.vae}) {
    CHECK(n->weights == DType::F16);
    CHECK(n->activations == DType::F16);
    CHECK(n->why.empty());
  }
  const ModelConfig xl = sdxl_family_config();
  CHECK(xl.vae.fp32_activations);
  p = precision_plan(xl, DType::F16, false);
  CHECK(p.text.activations == DType::F16);
  CHECK(p.unet.weights == DType::F16);
  CHECK(p.unet.activations == DType::F16);
  CHECK(p.vae.weights == DType::F16);
  CHECK(p.vae.activations == DType::F32);
  CHECK(describe(p.vae).find("weights f16, activations f32 (") == 0);
  CHECK(describe(p.vae).find("--vae-fp16") != std::string::npos);
  p = precision_plan(xl, DType::F16, true);  // --vae-fp16: the user's fp16-fixed VAE
  CHECK(p.vae.activations == DType::F16);
  p = precision_plan(xl, DType::F32, false);  // --fp32
  for (const NetPrecision* n : {&p.text, &p.unet, &p.vae}) {
    CHECK(n->weights == DType::F32);
    CHECK(n->activations == DType::F32);
  }
}

TEST_CASE("precision plan: a model config's vae.fp32_activations reaches the pipeline, a wrong type is an error") {
  PipelineOptions o;
  o.model_path = demo_file();
  o.config_json = demo_config_with(o.model_path, R"("fp32_activations": true)");
  SdPipeline pipe(test::ctx(), o);
  CHECK(pipe.precision().vae.activations == DType::F32);
  CHECK(pipe.precision().vae.weights == pipe.dtype());
  CHECK(pipe.precision().unet.activations == pipe.dtype());
  o.vae_fp16 = true;
  SdPipeline trusted(test::ctx(), o);
  CHECK(trusted.precision().vae.activations == pipe.dtype());
  o.config_json = demo_config_with(o.model_path, R"("fp32_activations": "yes")");
  const std::string e = test::error_of([&] { SdPipeline bad(test::ctx(), o); });
  CHECK(e.find("fp32_activations") != std::string::npos);
}

TEST_CASE("VAE overflowing fp16: fp16 activations give NaN (named at the VAE decoder) or a wrong image, vae.fp32_activations the right one") {
  if (test::ctx().compute_dtype() != DType::F16) {
    MESSAGE("the device has no fp16 storage: nothing overflows, nothing to test");
    return;
  }
  // The demo model with the decoder's post_quant_conv x 100 and conv_in x 1000: the weights stay
  // small enough for fp16 (they are stored fp16), the conv_in output passes 65504.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vksd_vae_overflow_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "model.safetensors").string();
  const std::string demo = demo_file();
  {
    SafetensorsFile src(demo);
    std::vector<StOutTensor> out;
    for (const StTensor& t : src.tensors()) out.push_back({t.name, DType::F32, t.shape});
    write_safetensors(path, out, [&](size_t i, std::vector<float>& v) {
      const StTensor& t = src.tensors()[i];
      v = src.to_f32(t);
      float s = 1;
      if (t.name.starts_with(std::string(kVaePrefix) + "post_quant_conv.")) s = 100;
      if (t.name.starts_with(std::string(kVaePrefix) + "decoder.conv_in.")) s = 1000;
      for (float& x : v) x *= s;
    });
  }
  // The demo model's config and vocabulary beside the copy, as beside the original.
  for (const auto& e : fs::directory_iterator(fs::path(demo).parent_path()))
    if (e.path().filename() == "model.json" || e.path().filename().string().starts_with("bpe_vocab"))
      fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
  GenerateParams p;
  p.prompt = "a red circle";
  p.width = p.height = 64;
  p.steps = 1;
  p.seed = 3;
  PipelineOptions o;
  o.model_path = path;
  std::vector<float> pix16;
  std::string e16;
  {
    SdPipeline fp16(test::ctx(), o);
    REQUIRE(fp16.precision().vae.activations == DType::F16);
    e16 = test::error_of([&] { pix16 = fp16.generate(p).pixels; });
  }
  o.config_json = demo_config_with(demo, R"("fp32_activations": true)");
  SdPipeline fp32vae(test::ctx(), o);
  REQUIRE(fp32vae.precision().vae.activations == DType::F32);
  GenerateResult r = fp32vae.generate(p);
  bool finite = true;
  for (float v : r.pixels) finite = finite && std::isfinite(v);
  CHECK(finite);
  // lavapipe saturates rather than producing inf, so the damage shows as a wrong image rather
  // than NaN; either way fp16 activations must not pass silently as the right image.
  if (!e16.empty()) {
    CHECK(e16.find("non-finite values") != std::string::npos);
    CHECK(e16.find("VAE decoder") != std::string::npos);
  } else {
    const double d = test::rel_l2(pix16, r.pixels);
    MESSAGE("overflowing VAE, fp16 vs fp32 activations: rel L2 " << d);
    CHECK(d > 0.1);
  }
  // Control: the unscaled demo VAE gives the same image with fp16 or fp32 activations, so the
  // difference above is the overflow, not fp16 storage as such.
  PipelineOptions c16;
  c16.model_path = demo;
  PipelineOptions c32 = c16;
  c32.config_json = demo_config_with(demo, R"("fp32_activations": true)");
  SdPipeline a(test::ctx(), c16), b(test::ctx(), c32);
  const double control = test::rel_l2(a.generate(p).pixels, b.generate(p).pixels);
  MESSAGE("demo VAE, fp16 vs fp32 activations: rel L2 " << control);
  CHECK(control < 1e-2);
  fs::remove_all(dir);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("memory estimate: SDXL base 1024x1024, fp16 weights, --lowvram with a tiled VAE fits in 6 GB") {
  const ModelConfig c = sdxl_base_architecture();
  const PrecisionPlan prec = precision_plan(sdxl_family_config(), DType::F16, false);
  REQUIRE(prec.vae.activations == DType::F32);
  MemoryQuery q;
  q.unet_weights = f16_bytes(unet_layout(c.unet));
  CHECK(q.unet_weights == 2 * 2567463684ull);  // SDXL base's UNet: 2,567,463,684 parameters
  // CLIP ViT-L (123 M) + OpenCLIP bigG (695 M with its text_projection), fp16.
  q.text_weights = f16_bytes(clip_layout(c.clip)) + f16_bytes(clip_layout(c.more_text_encoders[0])) + 2ull * 1280 * 1280;
  q.vae_weights = f16_bytes(vae_layout(c.vae));
  q.width = q.height = 1024;
  q.batch = 2;  // classifier-free guidance
  q.lowvram = true;
  q.vae_tile_pixels = 64 * 8;  // --lowvram's automatic VAE tiling, default tile
  const MemoryEstimate low = estimate_memory(c, prec, q);
  MESSAGE("SDXL 1024x1024 fp16 --lowvram: " << (low.peak >> 20) << " MiB = the largest stage of: " << low.describe_stages());
  CHECK(low.peak <= 6'000'000'000ull);
  CHECK(low.peak == low.unet_stage);  // the UNet's 4.8 GiB of weights dominate
  CHECK(low.text_stage < low.unet_stage);
  CHECK(low.vae_stage < low.unet_stage);
  // The VAE's activations are fp32 (precision plan): twice those of an fp16 VAE of the same tile.
  PrecisionPlan fp16vae = prec;
  fp16vae.vae.activations = DType::F16;
  CHECK(estimate_memory(c, fp16vae, q).vae * 2 == low.vae);
  // All resident it does not fit 6 GB: --lowvram is what makes an 8 GB GPU work.
  q.lowvram = false;
  q.vae_tile_pixels = 0;
  const MemoryEstimate all = estimate_memory(c, prec, q);
  MESSAGE("SDXL 1024x1024 fp16 all resident: " << (all.peak >> 20) << " MiB (" << all.describe() << ")");
  CHECK(all.peak > 6'000'000'000ull);
}

TEST_CASE("random SDXL checkpoint layout: the names of an SDXL base single file, recognised as SDXL, both encoders mapped") {
  const ModelConfig c = sdxl_base_architecture();
  const std::vector<TensorSpec> specs = sdxl_single_file_layout(c);
  std::vector<std::string> keys;
  int64_t text = 0;
  for (const TensorSpec& s : specs) {
    keys.push_back(s.name);
    if (s.name.starts_with("conditioner.")) text += shape_numel(s.shape);
  }
  CHECK(single_file_family(keys, "random") == ModelFamily::SDXL);
  CHECK(parameter_count(unet_layout(c.unet)) == 2567463684ll);
  // CLIP ViT-L 123,060,480 + OpenCLIP bigG 694,659,840 (with its 1280 x 1280 text_projection).
  MESSAGE("text encoder parameters: " << text);
  CHECK(text == 123060480ll + 694659840ll);
}

TEST_CASE("stage peaks: a --lowvram run measures each stage alone, within the estimate") {
  PipelineOptions o;
  o.model_path = demo_file();
  o.lowvram = true;
  SdPipeline pipe(test::ctx(), o);
  GenerateParams p;
  p.prompt = "a red circle";
  p.width = p.height = 64;
  p.steps = 1;
  p.seed = 5;
  const MemoryEstimate est = pipe.memory_estimate(p);
  const GenerateResult r = pipe.generate(p);
  REQUIRE(r.stage_peaks.size() == 3);
  CHECK(r.stage_peaks[0].first == "text");
  CHECK(r.stage_peaks[1].first == "unet");
  CHECK(r.stage_peaks[2].first == "vae decode");
  // Each network's weights, in the run's precision.
  Checkpoint ck = Checkpoint::open(o.model_path);
  uint64_t w_text = 0, w_unet = 0, w_vae = 0;
  for (const std::string& n : ck.tensor_names()) {
    const uint64_t b = (uint64_t)shape_numel(ck.shape(n)) * dtype_size(pipe.dtype());
    (n.starts_with(kUNetPrefix) ? w_unet : n.starts_with(kVaePrefix) ? w_vae : w_text) += b;
  }
  const uint64_t text = r.stage_peaks[0].second, unet = r.stage_peaks[1].second, vae = r.stage_peaks[2].second;
  MESSAGE("measured per stage: text " << text << ", unet " << unet << ", vae " << vae << " bytes; estimated "
                                      << est.describe_stages());
  CHECK(text >= w_text);
  CHECK(unet >= w_unet);
  CHECK(vae >= w_vae);
  // One network at a time: the UNet stage does not hold the text encoder or the VAE.
  CHECK(unet < w_unet + std::min(w_text, w_vae));
  CHECK(text < w_text + std::min(w_unet, w_vae));
  // The estimate per stage is an upper bound of what each stage held.
  CHECK(est.text_stage >= text);
  CHECK(est.unet_stage >= unet);
  CHECK(est.vae_stage >= vae);
  CHECK(est.peak == std::max({est.text_stage, est.unet_stage, est.vae_stage}));
}

TEST_CASE("VAE halves: text to image uploads the decoder's weights only, an init image adds the encoder's") {
  PipelineOptions o;
  o.model_path = demo_file();
  SdPipeline pipe(test::ctx(), o);  // all resident: what is loaded stays
  auto weights_now = [] {
    auto m = test::ctx().memory_in_use();
    return m.count("weights") ? m["weights"] : 0;
  };
  const uint64_t before = weights_now();
  // Each network's device bytes as load_weights places them: every tensor at the next
  // kTensorAlignment boundary, in the run's dtype.
  Checkpoint ck = Checkpoint::open(o.model_path);
  auto bytes_under = [&](const std::vector<std::string>& prefixes) {
    uint64_t b = 0;
    for (const std::string& n : ck.tensor_names())
      for (const std::string& pre : prefixes)
        if (n.starts_with(pre))
          b += align_up(align_up((VkDeviceSize)shape_numel(ck.shape(n)) * dtype_size(pipe.dtype()), 16), kTensorAlignment);
    return b;
  };
  const uint64_t text = bytes_under({kClipPrefix}), unet = bytes_under({kUNetPrefix});
  const uint64_t dec = bytes_under(kVaeDecoderPrefixes), enc = bytes_under(kVaeEncoderPrefixes);
  REQUIRE(text > 0);
  REQUIRE(dec > 0);
  REQUIRE(enc > 0);
  CHECK(dec + enc == bytes_under({kVaePrefix}));  // the two halves are the whole VAE
  GenerateParams p;
  p.prompt = "a red circle";
  p.width = p.height = 64;
  p.steps = 2;
  p.seed = 5;
  const GenerateResult r = pipe.generate(p);
  CHECK(weights_now() - before == text + unet + dec);
  p.init_image = r.image;
  p.strength = 0.5;
  pipe.generate(p);
  CHECK(weights_now() - before == text + unet + dec + enc);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("cli: generate --verbose prints precision and per-stage peaks, info shows them and the memory plan") {
  REQUIRE_MESSAGE(!test::vksd_binary().empty(), "the vksd binary was not built");
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vksd_stage_peaks_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string env = "env -u VKSD_MODEL -u VKSD_VOCAB VKSD_PEAK_MEMORY_FILE=" + test::shell_quote((dir / "peaks.tsv").string());
  auto g = test::run_vksd("generate -p 'a red circle' -W 64 -H 64 --steps 1 -s 1 --lowvram --verbose -o " +
                              test::shell_quote((dir / "out.png").string()),
                          env);
  INFO(g.out);
  CHECK(g.code == 0);
  CHECK(g.out.find("precision: text encoder weights f") != std::string::npos);
  CHECK(g.out.find("peak device memory per stage (measured): text ") != std::string::npos);
  CHECK(g.out.find(", unet ") != std::string::npos);
  CHECK(g.out.find("estimated per stage: text ") != std::string::npos);
  auto i = test::run_vksd("info", env);
  INFO(i.out);
  CHECK(i.code == 0);
  CHECK(i.out.find("    per stage: text ") != std::string::npos);
  CHECK(i.out.find("\nprecision ") != std::string::npos);
  CHECK(i.out.find("  VAE           weights f16, activations f16") != std::string::npos);
  CHECK(i.out.find("  --lowvram     ") != std::string::npos);
  fs::remove_all(dir);
}
