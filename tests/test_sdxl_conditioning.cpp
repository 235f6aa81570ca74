// SDXL conditioning parity on the sdxl-tiny checkpoint (original single-file SDXL layout) against
// the reference vectors made by the ORIGINAL SDXL code (Stability-AI generative-models 0.1.0 +
// open_clip 2.20, float32): both text encoders layer by layer, the concatenated context, the
// pooled vector, the size embeddings and the UNet's vector input y (conditional and
// unconditional), the VAE with SDXL's scale factor (the final image of the Euler run), and
// sgm's guided Euler run replayed with vksd's sampler on the reference UNet outputs. Bars: fp32 relative L2 <= 1e-5 per module; the size embeddings (cos/sin of
// arguments up to ~1100 rad) also against a double-precision evaluation of their definition.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <unistd.h>

#include "runtime/diffusion/samplers.h"
#include "runtime/diffusion/schedule.h"
#include "runtime/diffusion/sdxl_conditioning.h"
#include "runtime/diffusion/sdxl_size_conditioning.h"
#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/model_family.h"
#include "runtime/model/safetensors_writer.h"
#include "runtime/model/sdxl_family.h"
#include "runtime/model/sdxl_text.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "runtime/nn/sdxl_text_conditioner.h"
#include "runtime/nn/vae.h"
#include "runtime/text/tokenizer.h"
#include "tests/parity_util.h"
#include "tests/test_util.h"

using namespace vksd;
namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-5;
// fp16 storage of weights and activations (fp32 arithmetic): the bar and its reasoning are
// test_parity_tiny.cpp's (about 20 unit roundoffs of 2^-11; a wrong op is >= 1e-1).
constexpr double kF16Tol = 1e-2;
const char* kSet = "sdxl-tiny";

std::string sdxl_model() { return test::vector_set_dir(kSet) + "/model.safetensors"; }
test::Npy vec(const std::string& name) { return test::set_npy(kSet, name); }
std::vector<float> arr(const std::string& name) { return vec(name).data; }
double check(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref) {
  return test::check_close(what, DType::F32, got, ref, kTol);
}

Json model_json() {
  std::ifstream f(test::vector_set_dir(kSet) + "/model.json");
  return Json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
}

// The head counts shapes cannot tell, from the reference's model.json.
SdxlTextWeights open_tiny(const std::string& path) {
  const Json j = model_json();
  return SdxlTextWeights::open(path, (int)j.find("clip_l")->int_or("num_attention_heads", 0),
                               (int)j.find("clip_bigg")->int_or("heads", 0));
}

std::vector<int32_t> ids_of(const std::string& name) {
  const test::Npy t = vec(name);
  return {t.data.begin(), t.data.end()};
}

using vksd::test::error_of;

// The SDXL size conditioning the reference used (index.json meta.size_conditioning).
SdxlSizeConditioning reference_sizes() {
  SdxlSizeConditioning s;
  s.original_h = 1024, s.original_w = 768;
  s.crop_top = 16, s.crop_left = 8;
  s.target_h = 960, s.target_w = 1088;
  return s;
}

// Runs the conditioner on the three reference prompts and checks every stage.
double check_text_conditioning(const SdxlTextWeights& w, const std::string& label, DType storage = DType::F32) {
  auto wl = w.upload(test::ctx(), 0, storage);
  auto wg = w.upload(test::ctx(), 1, storage);
  const std::vector<int32_t> ids_l = ids_of("tokens_l"), ids_g = ids_of("tokens_g");
  const int batch = (int)vec("tokens_l").shape[0];
  nn::SdxlTextConditioner cond(test::ctx(), *wl, *wg, w.config(), w.text_projection(), batch);
  const nn::SdxlTextOutput out = cond.encode(ids_l, ids_g);
  double worst = 0;
  auto c = [&](const std::string& what, const std::vector<float>& got, const std::string& ref) {
    worst = std::max(worst, test::check_close(label + what, storage, got, arr(ref), storage == DType::F16 ? kF16Tol : kTol));
  };
  c("CLIP-L embeddings", cond.clip_l().embeddings(), "text_l_embeddings");
  c("CLIP-L layer 0", cond.clip_l().layer_output(0), "text_l_layer00");
  c("CLIP-L layer 1 (penultimate)", cond.clip_l().layer_output(1), "text_l_layer01");
  // The last CLIP-L layer is in the file but SDXL does not run it.
  CHECK(error_of([&] { cond.clip_l().layer_output(2); }).find("was not computed") != std::string::npos);
  c("bigG embeddings", cond.clip_g().embeddings(), "text_g_embeddings");
  c("bigG layer 0", cond.clip_g().layer_output(0), "text_g_layer00");
  c("bigG layer 1 (penultimate)", cond.clip_g().layer_output(1), "text_g_penultimate");
  c("bigG layer 2", cond.clip_g().layer_output(2), "text_g_layer02");
  c("bigG ln_final(last)", cond.clip_g().encode(ids_g), "text_g_last_ln");
  c("context = cat(CLIP-L, bigG)", out.context, "cond_crossattn");
  c("pooled", out.pooled, "text_g_pooled");
  return worst;
}

}  // namespace

TEST_CASE("sdxl-tiny: both text encoders' architecture comes from the single file's tensors") {
  REQUIRE_SHARED();
  const SdxlTextWeights w = open_tiny(sdxl_model());
  const SdxlTextConfig& c = w.config();
  const Json j = model_json();
  const Json& l = *j.find("clip_l");
  const Json& g = *j.find("clip_bigg");
  CHECK(c.clip_l.width == l.int_or("hidden_size", -1));
  CHECK(c.clip_l.layers == l.int_or("num_hidden_layers", -1));
  CHECK(c.clip_l.mlp_dim == l.int_or("intermediate_size", -1));
  CHECK(c.clip_l.vocab_size == l.int_or("vocab_size", -1));
  CHECK(c.clip_l.used_layers() == c.clip_l.layers - 1);  // hidden_states[L-1]
  CHECK(c.clip_l.quick_gelu);
  CHECK(c.clip_l.pad_token == l.int_or("pad_token", -1));
  CHECK(c.clip_g.width == g.int_or("width", -1));
  CHECK(c.clip_g.layers == g.int_or("layers", -1));
  CHECK(c.clip_g.used_layers() == c.clip_g.layers);  // the last layer feeds the pooled vector
  CHECK_FALSE(c.clip_g.quick_gelu);
  CHECK(c.clip_g.pad_token == g.int_or("pad_token", -1));
  CHECK(c.projection_dim == g.int_or("projection_dim", -1));
  CHECK(c.context_dim() == j.int_or("context_dim", -1));
  // Parameter counts as the reference counts them (its state dicts: CLIP-L's also holds the
  // position_ids buffer, 77 values; open_clip's holds logit_scale, 1 value).
  const Json& counts = *j.find("parameter_counts");
  CHECK(w.parameter_count(0) + c.clip_l.max_length == counts.int_or("clip_l", -1));
  CHECK(w.parameter_count(1) + 1 == counts.int_or("clip_bigg", -1));

  // Fused q/k/v of the bigG tower: the three projections are the stored in_proj rows, in order.
  SafetensorsFile f(sdxl_model());
  const StTensor& in_w = f.at("conditioner.embedders.1.model.transformer.resblocks.2.attn.in_proj_weight");
  const auto keys = sdxl_single_file_text_keys(in_w.name, in_w.shape);
  REQUIRE(keys.size() == 3);
  const int64_t d = in_w.shape[0] / 3;
  const char* qkv[] = {"q_proj", "k_proj", "v_proj"};
  for (int i = 0; i < 3; ++i) {
    CHECK(keys[i].encoder == 1);
    CHECK(keys[i].slice.name == std::string(kClipPrefix) + "encoder.layers.2.self_attn." + qkv[i] + ".weight");
    CHECK(keys[i].slice.row0 == i * d);
    CHECK(keys[i].slice.rows == d);
  }
  // What is not a text weight: position_ids, logit_scale, the other networks.
  CHECK(sdxl_single_file_text_keys("conditioner.embedders.0.transformer.text_model.embeddings.position_ids", {1, 77}).empty());
  CHECK(sdxl_single_file_text_keys("conditioner.embedders.1.model.logit_scale", {}).empty());
  CHECK(sdxl_single_file_text_keys("model.diffusion_model.label_emb.0.0.weight", {128, 1584}).empty());
  CHECK(sdxl_single_file_text_keys("conditioner.embedders.1.model.text_projection", {64, 48})[0].slice.name ==
        kSdxlTextProjection);
}

TEST_CASE("sdxl-tiny: the tokenizer gives both encoders' ids (CLIP-L pads with EOS, bigG with 0)") {
  REQUIRE_SHARED();
  const Tokenizer tok = Tokenizer::load(test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz");
  const SdxlTextConfig c = sdxl_text_defaults();
  const Json idx = [] {
    std::ifstream f(test::vector_set_dir(kSet) + "/index.json");
    return Json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
  }();
  const auto& prompts = idx.find("meta")->find("prompts")->as_array();
  const std::vector<int32_t> ids_l = ids_of("tokens_l"), ids_g = ids_of("tokens_g");
  REQUIRE(ids_l.size() == prompts.size() * 77);
  for (size_t p = 0; p < prompts.size(); ++p) {
    const std::string text = prompts[p].as_string("prompt");
    const auto l = tok.encode_for_sd(text, 77, c.clip_l.pad_token).ids;
    const auto g = tok.encode_for_sd(text, 77, c.clip_g.pad_token).ids;
    CHECK(l == std::vector<int32_t>(ids_l.begin() + p * 77, ids_l.begin() + (p + 1) * 77));
    CHECK(g == std::vector<int32_t>(ids_g.begin() + p * 77, ids_g.begin() + (p + 1) * 77));
  }
}

TEST_CASE("sdxl-tiny: text conditioning, both encoders layer by layer, context and pooled (single file)") {
  REQUIRE_SHARED();
  const SdxlTextWeights w = open_tiny(sdxl_model());
  MESSAGE("SDXL text conditioning worst rel L2 " << check_text_conditioning(w, ""));
  MESSAGE("SDXL text conditioning, fp16 storage, worst rel L2 " << check_text_conditioning(w, "", DType::F16));
}

TEST_CASE("sdxl-tiny: text conditioning from a diffusers folder (text_encoder + text_encoder_2)") {
  REQUIRE_SHARED();
  // The same weights in the diffusers layout: CLIPTextModel names (text_model.*, separate
  // q/k/v), and CLIPTextModelWithProjection's text_projection as a Linear weight [proj, width].
  const SdxlTextWeights single = open_tiny(sdxl_model());
  SafetensorsFile f(sdxl_model());
  const fs::path dir = fs::temp_directory_path() / ("vksd_sdxl_diffusers_" + std::to_string(::getpid()));
  fs::create_directories(dir / "text_encoder");
  fs::create_directories(dir / "text_encoder_2");
  for (int e = 0; e < 2; ++e) {
    std::vector<StOutTensor> out;
    std::vector<std::function<std::vector<float>()>> values;
    for (const StTensor& t : f.tensors())
      for (const SdxlTextKey& k : sdxl_single_file_text_keys(t.name, t.shape)) {
        if (k.encoder != e) continue;
        const std::vector<float> all = f.to_f32(t);
        Shape shape = t.shape;
        if (k.slice.name == kSdxlTextProjection) {  // [width, proj] -> Linear weight [proj, width]
          shape = {t.shape[1], t.shape[0]};
          std::vector<float> tr(all.size());
          for (int64_t i = 0; i < t.shape[0]; ++i)
            for (int64_t o = 0; o < t.shape[1]; ++o) tr[o * t.shape[0] + i] = all[i * t.shape[1] + o];
          out.push_back({"text_projection.weight", DType::F32, shape});
          values.push_back([tr] { return tr; });
          continue;
        }
        const std::string name = "text_model." + k.slice.name.substr(std::string(kClipPrefix).size());
        std::vector<float> v = all;
        if (k.slice.rows >= 0) {
          shape[0] = k.slice.rows;
          const size_t row = all.size() / t.shape[0];
          v.assign(all.begin() + k.slice.row0 * row, all.begin() + (k.slice.row0 + k.slice.rows) * row);
        }
        out.push_back({name, DType::F32, shape});
        values.push_back([v] { return v; });
      }
    write_safetensors((dir / (e == 0 ? "text_encoder" : "text_encoder_2") / "model.safetensors").string(), out,
                      [&](size_t i, std::vector<float>& o) { o = values[i](); });
    // Head counts from config.json, as diffusers folders state them.
    std::ofstream(dir / (e == 0 ? "text_encoder" : "text_encoder_2") / "config.json")
        << "{\"num_attention_heads\": "
        << (e == 0 ? single.config().clip_l.heads : single.config().clip_g.heads) << "}";
  }
  const SdxlTextWeights w = SdxlTextWeights::open(dir.string());
  CHECK(w.config().clip_l.heads == single.config().clip_l.heads);
  CHECK(w.config().clip_g.heads == single.config().clip_g.heads);
  CHECK(w.text_projection() == single.text_projection());
  const double worst = check_text_conditioning(w, "diffusers: ");
  MESSAGE("SDXL text conditioning (diffusers) worst rel L2 " << worst);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST_CASE("sdxl text weights: a broken or foreign file is refused with the tensor named") {
  REQUIRE_SHARED();
  // An SD 2.x file has no SDXL encoders.
  std::string e = error_of([] { SdxlTextWeights::open(test::vector_set_dir("sd2-tiny") + "/model.safetensors", 2, 2); });
  CHECK(e.find("CLIP ViT-L text encoder is missing") != std::string::npos);
  CHECK(e.find("not an SDXL base checkpoint") != std::string::npos);
  // Heads that do not divide the width.
  e = error_of([] { SdxlTextWeights::open(sdxl_model(), 3, 2); });
  CHECK(e.find("not divisible into 3 heads") != std::string::npos);
  // A file without bigG's last MLP.
  SafetensorsFile f(sdxl_model());
  const fs::path p = fs::temp_directory_path() / ("vksd_sdxl_broken_" + std::to_string(::getpid()) + ".safetensors");
  std::vector<StOutTensor> out;
  std::vector<const StTensor*> src;
  for (const StTensor& t : f.tensors())
    if (t.name != "conditioner.embedders.1.model.transformer.resblocks.2.mlp.c_fc.weight" && t.dtype == StDType::F32) {
      out.push_back({t.name, DType::F32, t.shape});
      src.push_back(&t);
    }
  write_safetensors(p.string(), out, [&](size_t i, std::vector<float>& o) { o = f.to_f32(*src[i]); });
  e = error_of([&] { SdxlTextWeights::open(p.string(), 2, 2); });
  CHECK(e.find("OpenCLIP ViT-bigG text encoder does not match") != std::string::npos);
  CHECK(e.find("encoder.layers.2.mlp.fc1.weight") != std::string::npos);
  fs::remove(p);
}

TEST_CASE("sdxl size embedding: the reference's float32 steps, and the definition in double") {
  // timestep_embedding(v, 256): cos(v f_i) for i < 128, then sin; f_i = 10000^(-i/128).
  for (double v : {0.0, 1.0, 8.0, 16.0, 768.0, 1024.0, 1088.0, 4096.0}) {
    const std::vector<float> got = fourier_embedding(v);
    REQUIRE(got.size() == 256);
    double worst = 0;
    for (int i = 0; i < 128; ++i) {
      const double arg = v * std::exp(-std::log(10000.0) * i / 128.0);
      worst = std::max({worst, std::abs(got[i] - std::cos(arg)), std::abs(got[128 + i] - std::sin(arg))});
    }
    // float32 rounding of the frequency (relative 6e-8) times v ~ 1e3 moves the argument by
    // up to ~1e-4 rad: the floor the reference's own f32 arithmetic has against exact math.
    CHECK(worst <= (v < 100 ? 1e-6 : 2e-4));
  }
  CHECK(fourier_embedding(0)[0] == 1.f);    // cos(0)
  CHECK(fourier_embedding(0)[128] == 0.f);  // sin(0)
  // A pair is [fourier(first), fourier(second)]; sizes are (height, width).
  const auto pair = pair_embedding(1024, 768);
  CHECK(std::vector<float>(pair.begin(), pair.begin() + 256) == fourier_embedding(1024));
  CHECK(std::vector<float>(pair.begin() + 256, pair.end()) == fourier_embedding(768));
  const SdxlSizeConditioning s = SdxlSizeConditioning::for_image(832, 1216);
  CHECK(s.original_h == 1216);
  CHECK(s.original_w == 832);
  CHECK(s.target_h == 1216);
  CHECK(s.crop_top == 0);
  SdxlSizeConditioning bad;
  bad.crop_left = -1;
  CHECK(error_of([&] { sdxl_size_embedding(bad); }).find("crop") != std::string::npos);
  bad = {};
  bad.target_w = 0;
  CHECK(error_of([&] { sdxl_size_embedding(bad); }).find("positive") != std::string::npos);
}

TEST_CASE("sdxl-tiny: size embeddings and the UNet's vector y, conditional and unconditional") {
  REQUIRE_SHARED();
  const SdxlSizeConditioning s = reference_sizes();
  struct {
    const char* file;
    std::vector<float> got;
  } parts[] = {{"cond_emb_original_size_as_tuple", pair_embedding(s.original_h, s.original_w)},
               {"cond_emb_crop_coords_top_left", pair_embedding(s.crop_top, s.crop_left)},
               {"cond_emb_target_size_as_tuple", pair_embedding(s.target_h, s.target_w)}};
  for (auto& p : parts) {
    const std::vector<float> ref = arr(p.file);
    check(p.file, p.got, ref);
    const double d = test::max_abs_diff(p.got, ref);
    MESSAGE(std::string(p.file) << ": max |d| " << d);
    CHECK(d <= 1e-4);  // the README's note on f32 sin/cos of ~1100 rad
  }

  // y = cat(pooled, sizes) for the three prompts, with the pooled vector from the text encoders.
  const SdxlTextWeights w = open_tiny(sdxl_model());
  auto wl = w.upload(test::ctx(), 0, DType::F32);
  auto wg = w.upload(test::ctx(), 1, DType::F32);
  nn::SdxlTextConditioner cond(test::ctx(), *wl, *wg, w.config(), w.text_projection(), 3);
  const nn::SdxlTextOutput out = cond.encode(ids_of("tokens_l"), ids_of("tokens_g"));
  const std::vector<float> y = sdxl_vector_y(out.pooled, 3, w.config().projection_dim, s);
  CHECK((int64_t)y.size() == 3 * model_json().int_or("adm_in_channels", -1));
  check("y (cond_vector)", y, arr("cond_vector"));
  // The reference's pooled rows put in y give y to float rounding of the size part alone.
  check("y from the reference's pooled", sdxl_vector_y(arr("text_g_pooled"), 3, w.config().projection_dim, s),
        arr("cond_vector"));
  // Unconditional: sgm zeroes the text embeddings (force_uc_zero_embeddings), sizes kept.
  const nn::SdxlTextOutput uc = nn::zero_text_conditioning(w.config(), 1);
  CHECK(uc.context.size() == (size_t)77 * model_json().int_or("context_dim", -1));
  CHECK(std::all_of(uc.context.begin(), uc.context.end(), [](float v) { return v == 0.f; }));
  check("y unconditional (uncond_vector)", sdxl_vector_y(uc.pooled, 1, w.config().projection_dim, s), arr("uncond_vector"));
}

// ---- the family ---------------------------------------------------------------------------------

TEST_CASE("sdxl-tiny: recognised as SDXL base, described from its tensors, refused for generation until the UNet lands") {
  REQUIRE_SHARED();
  SafetensorsFile f(sdxl_model());
  std::vector<std::string> keys;
  std::map<std::string, Shape> unet;
  for (const StTensor& t : f.tensors()) {
    keys.push_back(t.name);
    if (t.name.rfind(kUNetPrefix, 0) == 0) unet[t.name] = t.shape;
  }
  CHECK(is_sdxl_base(keys));
  // A refiner (one OpenCLIP encoder as embedders.0) and SD 2.x are not SDXL base.
  CHECK_FALSE(is_sdxl_base({"conditioner.embedders.0.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"}));
  CHECK_FALSE(is_sdxl_base({"cond_stage_model.model.ln_final.weight", "model.diffusion_model.input_blocks.0.0.weight"}));

  // The UNet's SDXL parts from the shapes, against the reference's architecture.
  const Json j = model_json();
  const Json& ju = *j.find("unet");
  const SdxlUNetDescription u = sdxl_unet_from_tensors(unet, (int)ju.int_or("num_head_channels", -1));
  auto ints = [](const Json& a) {
    std::vector<int> r;
    for (const Json& e : a.as_array()) r.push_back((int)e.as_int());
    return r;
  };
  CHECK(u.model_channels == ju.int_or("model_channels", -1));
  CHECK(u.channel_mult == ints(*ju.find("channel_mult")));
  CHECK(u.num_res_blocks == ju.int_or("num_res_blocks", -1));
  CHECK(u.transformer_depth == ints(*ju.find("transformer_depth")));
  CHECK(u.transformer_depth_middle == 2);  // model.json "levels": middle SpatialTransformer depth 2
  CHECK(u.context_dim == ju.int_or("context_dim", -1));
  CHECK(u.adm_in_channels == ju.int_or("adm_in_channels", -1));
  CHECK(u.use_linear_in_transformer);
  // y's length is pooled + 3 pairs of size embeddings; the context is both encoders' widths.
  const SdxlTextWeights w = open_tiny(sdxl_model());
  CHECK(u.adm_in_channels == w.config().projection_dim + 6 * kSdxlSizeEmbedDim);
  CHECK(u.context_dim == w.config().context_dim());
  for (const TensorSpec& s : sdxl_label_emb_layout(u)) {
    CAPTURE(s.name);
    REQUIRE(f.find(s.name));
    CHECK(f.at(s.name).shape == s.shape);
  }

  // `vksd generate` (through Checkpoint::open) refuses it, naming what is missing.
  std::string e = error_of([] { Checkpoint::open(sdxl_model()); });
  CHECK(e.find("an SDXL checkpoint") != std::string::npos);
  CHECK(e.find("SDXL UNet support is in progress") != std::string::npos);
  e = error_of([] { diffusers_family("StableDiffusionXLPipeline", "quick_gelu", true, "d"); });
  CHECK(e.find("an SDXL pipeline") != std::string::npos);
  CHECK(e.find("SDXL UNet support is in progress") != std::string::npos);
  e = error_of([] { diffusers_family("StableDiffusionXLImg2ImgPipeline", "", true, "d"); });
  CHECK(e.find("an SDXL pipeline") != std::string::npos);
  CHECK(e.find("in progress") == std::string::npos);
  const auto run = test::run_vksd("generate -m " + test::shell_quote(sdxl_model()) + " -p cat --steps 1 -o " +
                                  test::shell_quote((fs::temp_directory_path() / "vksd_sdxl_refused.png").string()));
  CHECK(run.code != 0);
  CHECK(run.out.find("SDXL UNet support is in progress") != std::string::npos);
  CHECK_FALSE(fs::exists(fs::temp_directory_path() / "vksd_sdxl_refused.png"));
}

TEST_CASE("sdxl base description: SDXL 1.0's numbers, self-consistent") {
  const SdxlFamilyDescription& d = sdxl_base();
  CHECK(d.unet.transformer_depth == std::vector<int>{0, 2, 10});
  CHECK(d.unet.transformer_depth_middle == 10);
  CHECK(d.unet.channel_mult == std::vector<int>{1, 2, 4});
  CHECK(d.unet.num_res_blocks == 2);
  CHECK(d.unet.num_head_channels == 64);
  CHECK(d.unet.context_dim == 2048);
  CHECK(d.unet.context_dim == d.text.context_dim());  // 768 + 1280
  CHECK(d.unet.adm_in_channels == 2816);
  CHECK(d.unet.adm_in_channels == d.text.projection_dim + 6 * d.size_embed_dim);
  CHECK(d.vae.scale_factor == 0.13025f);
  CHECK(d.sample_size == 1024);
  CHECK(d.text.clip_l.width == 768);
  CHECK(d.text.clip_l.used_layers() == 11);  // hidden_states[11]
  CHECK(d.text.clip_g.width == 1280);
  CHECK(d.text.clip_g.layers == 32);
  CHECK(d.text.clip_g.width / d.text.clip_g.heads == 64);
  ModelConfig cfg;
  apply_sdxl_description(cfg);
  CHECK(cfg.clip.width == 768);
  CHECK(cfg.unet.context_dim == 2048);
  CHECK(cfg.unet.attention_levels == std::vector<bool>{false, true, true});
  CHECK(cfg.unet.heads_for(640) == 10);
  CHECK(cfg.unet.heads_for(1280) == 20);
  CHECK(cfg.vae.scale_factor == 0.13025f);
}

TEST_CASE("vksd info: describes an SDXL base file (both encoders, the UNet's SDXL parts, parameters)") {
  REQUIRE_SHARED();
  const auto r = test::run_vksd("info " + test::shell_quote(sdxl_model()));
  CHECK(r.code == 0);
  const Json j = model_json();
  const Json& counts = *j.find("parameter_counts");
  for (const std::string& want :
       {std::string("SDXL base"), std::string("SDXL UNet support is in progress"),
        std::string("transformer depth per level [0, 2], middle 2, context_dim 96, proj_in/out linear"),
        std::string("adm_in_channels 1584 = pooled text 48 + 3 x 512"), std::string("scale_factor 0.13025"),
        std::string("OpenCLIP ViT-bigG/14"), std::string("context    32 + 64 = 96")}) {
    CAPTURE(want);
    CHECK(r.out.find(want) != std::string::npos);
  }
  // The parameter table's first number on the row of a network.
  auto params = [&](const std::string& row) -> long long {
    const size_t at = r.out.find("\n" + row + "  ");  // not the section titles, "UNet (...)"
    if (at == std::string::npos) return -1;
    return std::atoll(r.out.c_str() + r.out.find_first_not_of(' ', at + 1 + row.size()));
  };
  CHECK(params("UNet") == counts.int_or("unet", -2));
  CHECK(params("VAE") == counts.int_or("vae", -2));
  // The reference counts its state dicts: CLIP-L's position_ids buffer, open_clip's logit_scale.
  CHECK(params("CLIP ViT-L") + 77 == counts.int_or("clip_l", -2));
  CHECK(params("OpenCLIP bigG") + 1 == counts.int_or("clip_bigg", -2));
  if (r.out.find("SDXL base") == std::string::npos) MESSAGE(r.out);
}

TEST_CASE("sdxl-tiny: both guidance branches from prompt text (empty negative = zeroed text, else encoded)") {
  REQUIRE_SHARED();
  const Tokenizer tok = Tokenizer::load(test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz");
  const SdxlTextWeights w = open_tiny(sdxl_model());
  auto wl = w.upload(test::ctx(), 0, DType::F32);
  auto wg = w.upload(test::ctx(), 1, DType::F32);
  nn::SdxlTextConditioner te(test::ctx(), *wl, *wg, w.config(), w.text_projection(), 1);
  const test::Npy ctx = vec("cond_crossattn"), y = vec("cond_vector");
  const std::string p0 = "a photograph of an astronaut riding a horse";
  const std::string p1 = "A cozy cabin in the snowy mountains, oil painting, highly detailed, 4k!";

  const SdxlGuidedConditioning g = sdxl_condition(te, tok, p0, "", reference_sizes());
  check("cond context", g.cond.context, test::rows(ctx, 0, 1));
  check("cond y", g.cond.y, test::rows(y, 0, 1));
  CHECK_FALSE(g.cond.truncated);
  CHECK(std::all_of(g.uncond.context.begin(), g.uncond.context.end(), [](float v) { return v == 0.f; }));
  CHECK(g.uncond.context.size() == g.cond.context.size());
  check("uncond y (empty negative: zeroed pooled)", g.uncond.y, arr("uncond_vector"));

  // A negative prompt is encoded like a prompt: its context and pooled vector.
  const SdxlGuidedConditioning n = sdxl_condition(te, tok, p0, p1, reference_sizes());
  check("uncond context (negative prompt)", n.uncond.context, test::rows(ctx, 1, 1));
  check("uncond y (negative prompt)", n.uncond.y, test::rows(y, 1, 1));

  // A prompt longer than the window is cut and says so.
  std::string longer;
  for (int i = 0; i < 100; ++i) longer += "horse ";
  CHECK(sdxl_branch(te, tok, longer, reference_sizes()).truncated);
  // The batch-1 contract.
  nn::SdxlTextConditioner te3(test::ctx(), *wl, *wg, w.config(), w.text_projection(), 3);
  CHECK(error_of([&] { sdxl_branch(te3, tok, p0, reference_sizes()); }).find("batch 1") != std::string::npos);
}

TEST_CASE("sdxl pooled vector: the first end token's row through the projection, in double") {
  // 2 prompts x 4 tokens x width 3, projection 3 -> 2; EOS = 9. Prompt 0 is padded with EOS
  // (CLIP-L style: the first EOS counts), prompt 1 with 0 (bigG style).
  const std::vector<int32_t> ids = {1, 5, 9, 9, 1, 9, 0, 0};
  std::vector<float> ln(2 * 4 * 3);
  for (size_t i = 0; i < ln.size(); ++i) ln[i] = (float)(0.25 * (double)i - 1.0);
  const std::vector<float> proj = {0.5f, -1.f, 2.f, 0.25f, -0.75f, 1.5f};  // [3, 2]
  const std::vector<float> got = nn::pooled_text_embedding(ln, ids, 2, 4, 3, proj, 2, 9);
  REQUIRE(got.size() == 4);
  const int eos[2] = {2, 1};
  for (int b = 0; b < 2; ++b)
    for (int j = 0; j < 2; ++j) {
      double want = 0;
      for (int i = 0; i < 3; ++i) want += (double)ln[(size_t)(b * 4 + eos[b]) * 3 + i] * proj[(size_t)i * 2 + j];
      CHECK(got[(size_t)b * 2 + j] == doctest::Approx(want).epsilon(1e-7));
    }
  // No end token: named.
  CHECK(error_of([&] { nn::pooled_text_embedding(ln, {1, 5, 6, 7, 1, 9, 0, 0}, 2, 4, 3, proj, 2, 9); })
            .find("prompt 0 has no end-of-text token") != std::string::npos);
  CHECK(error_of([&] { nn::pooled_text_embedding(ln, ids, 2, 4, 3, proj, 3, 9); }).find("sizes do not match") !=
        std::string::npos);
  // cat on the channel axis: rows interleave a's then b's channels.
  CHECK(nn::concat_channels({1, 2, 3, 4}, 2, {5, 6}, 1) == std::vector<float>{1, 2, 5, 3, 4, 6});
  CHECK(error_of([] { nn::concat_channels({1, 2, 3, 4}, 2, {5, 6, 7}, 1); }).find("same rows") != std::string::npos);
}

TEST_CASE("sdxl-tiny: the VAE with SDXL's scale factor 0.13025 (decode, encode, the Euler run's final image)") {
  REQUIRE_SHARED();
  // The VAE is SD's AutoencoderKL; its size from model.json, the scale factor from the family.
  const Json jv = *model_json().find("vae");
  VaeConfig cfg;
  cfg.ch = (int)jv.int_or("ch", -1);
  cfg.ch_mult.clear();
  for (const Json& m : jv.find("ch_mult")->as_array()) cfg.ch_mult.push_back((int)m.as_int());
  cfg.num_res_blocks = (int)jv.int_or("num_res_blocks", -1);
  cfg.z_channels = cfg.embed_dim = (int)jv.int_or("z_channels", -1);
  cfg.scale_factor = sdxl_base().vae.scale_factor;
  CHECK(cfg.scale_factor == (float)model_json().find("scale_factor")->as_number());
  // first_stage_model.* as stored, checked against the layout that config implies.
  SafetensorsFile f(sdxl_model());
  WeightStore ws(test::ctx(), DType::F32);
  int uploaded = 0;
  for (const TensorSpec& spec : vae_layout(cfg)) {
    CAPTURE(spec.name);
    REQUIRE(f.find(spec.name));
    REQUIRE(f.at(spec.name).shape == spec.shape);
    ws.add(spec.name, spec.shape, f.to_f32(f.at(spec.name)).data());
    ++uploaded;
  }
  int stored = 0;
  for (const StTensor& t : f.tensors()) stored += t.name.rfind(kVaePrefix, 0) == 0;
  CHECK(uploaded == stored);

  auto decode = [&](const std::string& latent_file) {
    test::Npy z = vec(latent_file);
    for (float& v : z.data) v /= cfg.scale_factor;
    nn::VaeDecoder dec(test::ctx(), ws, cfg, 1, (int)z.shape[2], (int)z.shape[3]);
    return dec.decode(z.data);
  };
  check("vae_dec_out = decode(vae_dec_in / 0.13025)", decode("vae_dec_in"), arr("vae_dec_out"));
  check("euler_final_image = decode(euler_final_latent / 0.13025)", decode("euler_final_latent"), arr("euler_final_image"));
  const test::Npy img = vec("vae_enc_in");
  nn::VaeEncoder enc(test::ctx(), ws, cfg, 1, (int)img.shape[2], (int)img.shape[3]);
  const auto post = enc.encode(img.data);
  check("vae_enc_mean", post.mean, arr("vae_enc_mean"));
  check("vae_enc_logvar", post.logvar, arr("vae_enc_logvar"));
  std::vector<float> scaled = post.mean;
  for (float& v : scaled) v *= cfg.scale_factor;
  check("vae_enc_mean_scaled = mean * 0.13025", scaled, arr("vae_enc_mean_scaled"));
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("sdxl-tiny: sgm's Euler run (SDXL schedule, CFG 7.5) step by step, from the reference UNet outputs") {
  REQUIRE_SHARED();
  // sgm's EulerEDMSampler over LegacyDDPMDiscretization visits t = 999, 749, 499, 249: vksd's
  // euler with trailing spacing, on the family's schedule.
  const NoiseSchedule sched(sdxl_base().schedule);
  auto sampler = Sampler::create(SamplerKind::Euler, sched, 4, -1, TimestepSpacing::Trailing);
  const std::vector<float> sigmas = arr("euler_sigmas");
  const test::Npy ts = vec("euler_timesteps");
  REQUIRE(sampler->steps() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(sampler->sigma_at(i) == doctest::Approx(sigmas[(size_t)i]).epsilon(1e-6));
    CHECK(sampler->timestep(i) == doctest::Approx(ts.data[(size_t)i]).epsilon(1e-9));
  }
  // sgm starts from noise * sqrt(1 + sigma_0^2) (not k-diffusion's noise * sigma_0).
  const std::vector<float> noise = arr("euler_noise");
  Latent x(noise.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = noise[i] * std::sqrt(1.0 + sampler->sigma_at(0) * sampler->sigma_at(0));
  auto as_float = [](const Latent& v) { return std::vector<float>(v.begin(), v.end()); };
  check("euler_xT", as_float(x), arr("euler_xT"));

  // The model: the reference UNet's outputs for the step, guided (D = D_u + 7.5 (D_c - D_u)
  // with D = x - sigma eps is eps = eps_u + 7.5 (eps_c - eps_u)); its input checked on the way.
  int step = 0;
  const ModelFn model = [&](const Latent& x_in, double t) {
    const std::string k = "euler_step" + std::to_string(step);
    check(k + "_unet_in", as_float(x_in), arr(k + "_unet_in"));
    CHECK(t == doctest::Approx(ts.data[(size_t)step]).epsilon(1e-9));
    const std::vector<float> u = arr(k + "_out_uncond"), c = arr(k + "_out_cond");
    Latent eps(u.size());
    for (size_t i = 0; i < eps.size(); ++i) eps[i] = u[i] + 7.5 * ((double)c[i] - u[i]);
    ++step;
    return eps;
  };
  TorchRng rng(0);
  const Latent final = sampler->run(x, model, rng, 0, [&](const StepInfo& info, Latent& xi) {
    const std::string k = "euler_step" + std::to_string(info.index);
    check(k + "_denoised", as_float(*info.denoised), arr(k + "_denoised"));
    check(k + "_x", as_float(xi), arr(k + "_x"));
  });
  CHECK(step == 4);
  check("euler_final_latent", as_float(final), arr("euler_final_latent"));
}

TEST_CASE("sdxl-tiny: vksd's y through the checkpoint's label_emb (in double) gives the reference's label embedding") {
  REQUIRE_SHARED();
  // label_emb = Sequential(Sequential(Linear(adm, E), SiLU, Linear(E, E))) on y = cond_vector[0];
  // here y is vksd's own (text encoders + size embeddings), so the test closes the loop from
  // prompt tokens to what the UNet adds to its time embedding.
  const SdxlTextWeights w = open_tiny(sdxl_model());
  auto wl = w.upload(test::ctx(), 0, DType::F32);
  auto wg = w.upload(test::ctx(), 1, DType::F32);
  nn::SdxlTextConditioner cond(test::ctx(), *wl, *wg, w.config(), w.text_projection(), 3);
  const nn::SdxlTextOutput out = cond.encode(ids_of("tokens_l"), ids_of("tokens_g"));
  const std::vector<float> y = sdxl_vector_y(out.pooled, 3, w.config().projection_dim, reference_sizes());
  SafetensorsFile f(sdxl_model());
  auto t = [&](const char* n) { return f.to_f32(f.at(std::string(kUNetPrefix) + n)); };
  const std::vector<float> w0 = t("label_emb.0.0.weight"), b0 = t("label_emb.0.0.bias"), w2 = t("label_emb.0.2.weight"),
                           b2 = t("label_emb.0.2.bias");
  const size_t E = b0.size(), adm = w0.size() / E;
  REQUIRE(adm * 3 == y.size());
  std::vector<double> h(E);
  for (size_t o = 0; o < E; ++o) {
    double a = b0[o];
    for (size_t i = 0; i < adm; ++i) a += (double)w0[o * adm + i] * y[i];  // row 0: the first prompt
    h[o] = a / (1 + std::exp(-a));                                       // SiLU
  }
  std::vector<float> emb(E);
  for (size_t o = 0; o < E; ++o) {
    double a = b2[o];
    for (size_t i = 0; i < E; ++i) a += (double)w2[o * E + i] * h[i];
    emb[o] = (float)a;
  }
  check("label_emb(y) vs unet_label_emb", emb, arr("unet_label_emb"));
}
