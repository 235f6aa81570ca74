// SDXL conditioning parity on the sdxl-tiny checkpoint (original single-file SDXL layout) against
// the reference vectors made by the ORIGINAL SDXL code (Stability-AI generative-models 0.1.0 +
// open_clip 2.20, float32), through vksd's general path: the Checkpoint reads both text encoders
// (ModelConfig::text_encoders(), model/sdxl_family.h's data), nn::TextEncoder runs each, and the
// pipeline's conditioner (SdPipeline::encode_text) concatenates the contexts and gives the pooled
// vector. Checked: both encoders layer by layer, the context, the pooled vector, the size
// embeddings and the UNet's vector input y, the VAE with SDXL's scale factor, sgm's guided Euler
// run replayed with vksd's sampler on the reference UNet outputs, and `vksd info`. Bars: fp32
// relative L2 <= 1e-5 per module; the size embeddings (cos/sin of arguments up to ~1100 rad)
// also against a double-precision evaluation of their definition.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <unistd.h>

#include "runtime/diffusion/conditioner.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/samplers.h"
#include "runtime/diffusion/schedule.h"
#include "runtime/diffusion/sdxl_size_conditioning.h"
#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/model_family.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/sdxl_family.h"
#include "runtime/model/weights.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/nn/vae.h"
#include "runtime/text/tokenizer.h"
#include "tests/parity_util.h"
#include "tests/sdxl_tiny.h"
#include "tests/test_util.h"

using namespace vksd;
using namespace vksd::test::sdxl_tiny;
namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-5;
// fp16 storage of weights and activations (fp32 arithmetic): the bar and its reasoning are
// test_parity_tiny.cpp's (about 20 unit roundoffs of 2^-11; a wrong op is >= 1e-1).
constexpr double kF16Tol = 1e-2;

double check(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref) {
  return test::check_close(what, DType::F32, got, ref, kTol);
}

std::vector<int32_t> ids_of(const std::string& name) {
  const test::Npy t = vec(name);
  return {t.data.begin(), t.data.end()};
}

using vksd::test::error_of;

// y for the three reference prompts as the pipeline's conditioner makes it: each prompt's
// pooled vector (SdPipeline::encode_text), then the reference's size embeddings.
std::vector<float> pipeline_y() {
  SdPipeline pipe(test::ctx(), pipeline_options());
  const std::vector<float> size = sdxl_size_embedding(reference_sizes());
  std::vector<float> y;
  for (const std::string& prompt : prompts()) {
    const SdPipeline::TextOutput t = pipe.encode_text(prompt, 1, 1);
    y.insert(y.end(), t.pooled.begin(), t.pooled.end());
    y.insert(y.end(), size.begin(), size.end());
  }
  return y;
}

}  // namespace

TEST_CASE("sdxl-tiny: the family and both text encoders' architecture come from the single file's tensors") {
  REQUIRE_SHARED();
  const Checkpoint ck = sdxl_checkpoint();
  const ModelConfig& c = ck.config();
  const Json j = model_json();
  const Json& l = *j.find("clip_l");
  const Json& g = *j.find("clip_bigg");
  CHECK(c.family == ModelFamily::SDXL);
  REQUIRE(c.text_encoder_count() == 2);
  const ClipConfig& cl = c.text_encoder(0);
  const ClipConfig& cg = c.text_encoder(1);
  CHECK(cl.width == l.int_or("hidden_size", -1));
  CHECK(cl.layers == l.int_or("num_hidden_layers", -1));
  CHECK(cl.mlp_dim == l.int_or("intermediate_size", -1));
  CHECK(cl.vocab_size == l.int_or("vocab_size", -1));
  CHECK(cl.context_layer(1) == cl.layers - 2);  // hidden_states[L-1]: the penultimate layer's output
  CHECK_FALSE(cl.final_norm);
  CHECK(cl.quick_gelu);
  CHECK(cl.pad_token == l.int_or("pad_token", -1));
  CHECK(cl.pooled_dim == 0);
  CHECK(cg.width == g.int_or("width", -1));
  CHECK(cg.layers == g.int_or("layers", -1));
  CHECK(cg.used_layers() == cg.layers);  // the last layer feeds the pooled vector
  CHECK(cg.context_layer(1) == cg.layers - 2);
  CHECK_FALSE(cg.final_norm);
  CHECK_FALSE(cg.quick_gelu);
  CHECK(cg.pad_token == g.int_or("pad_token", -1));
  CHECK(cg.pooled_dim == g.int_or("projection_dim", -1));
  CHECK(c.context_width() == j.int_or("context_dim", -1));
  CHECK(c.unet.context_dim == c.context_width());
  CHECK(c.unet.adm_in_channels == j.int_or("adm_in_channels", -1));
  CHECK(c.unet.adm_in_channels == c.pooled_width() + 6 * c.size_embed_dim);
  CHECK(c.force_zeros_for_empty_prompt);
  CHECK(c.vae.scale_factor == (float)j.find("scale_factor")->as_number());
  CHECK(c.schedule.init_noise == "sqrt_sigma2_plus_1");
  CHECK(c.preview.weights == LatentRgbMap::sdxl().weights);  // the family's step-preview colours
  // Parameter counts as the reference counts them (its state dicts: CLIP-L's also holds the
  // position_ids buffer, 77 values; open_clip's holds logit_scale, 1 value).
  const Json& counts = *j.find("parameter_counts");
  CHECK(parameter_count(clip_layout(cl)) + cl.max_length == counts.int_or("clip_l", -1));
  CHECK(parameter_count(clip_layout(cg)) + 1 == counts.int_or("clip_bigg", -1));
  CHECK(parameter_count(unet_layout(c.unet)) == counts.int_or("unet", -1));
  // Fused q/k/v of the bigG tower: the three projections are the stored in_proj rows, in order.
  const std::string layer2 = cg.prefix + "encoder.layers.2.self_attn.";
  CHECK(ck.source(layer2 + "q_proj.weight").find("resblocks.2.attn.in_proj_weight rows 0..63") != std::string::npos);
  CHECK(ck.source(layer2 + "v_proj.weight").find("in_proj_weight rows 128..191") != std::string::npos);
  CHECK(ck.source(cg.prefix + "text_projection").find("conditioner.embedders.1.model.text_projection") != std::string::npos);
}

TEST_CASE("SDXL base defaults: SDXL 1.0's numbers where the tensors cannot tell") {
  ModelConfig c;
  apply_family_defaults(c, ModelFamily::SDXL);
  CHECK(c.sample_size == 1024);
  CHECK(c.text_encoder(0).heads == 12);
  CHECK(c.text_encoder(1).heads == 20);
  CHECK(c.text_encoder(1).width / c.text_encoder(1).heads == 64);
  CHECK(c.unet.num_head_channels == 64);
  CHECK(c.vae.scale_factor == 0.13025f);
  CHECK(c.size_embed_dim == 256);
  CHECK(c.preview.weights == LatentRgbMap::sdxl().weights);
  CHECK(c.preview.weights != LatentRgbMap::sd1().weights);
  ModelConfig sd1;
  apply_family_defaults(sd1, ModelFamily::SD1);
  CHECK(sd1.preview.weights == LatentRgbMap::sd1().weights);
  CHECK(sd1.text_encoder_count() == 1);
  CHECK(sd1.schedule.init_noise == "sigma");
}

TEST_CASE("sdxl-tiny: each encoder tokenizes with its own pad token (CLIP-L pads with EOS, bigG with 0)") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), pipeline_options());
  const std::vector<int32_t> ids_l = ids_of("tokens_l"), ids_g = ids_of("tokens_g");
  const auto ps = prompts();
  REQUIRE(ids_l.size() == ps.size() * 77);
  for (size_t p = 0; p < ps.size(); ++p) {
    const WeightedPrompt l = pipe.tokenize_for(ps[p], 1, pipe.config().text_encoder(0).pad_token);
    const WeightedPrompt g = pipe.tokenize_for(ps[p], 1, pipe.config().text_encoder(1).pad_token);
    CHECK(std::vector<int32_t>(l.chunk_ids(0), l.chunk_ids(0) + 77) ==
          std::vector<int32_t>(ids_l.begin() + p * 77, ids_l.begin() + (p + 1) * 77));
    CHECK(std::vector<int32_t>(g.chunk_ids(0), g.chunk_ids(0) + 77) ==
          std::vector<int32_t>(ids_g.begin() + p * 77, ids_g.begin() + (p + 1) * 77));
  }
}

TEST_CASE("sdxl-tiny: text conditioning, both encoders layer by layer, then the conditioner's context and pooled") {
  REQUIRE_SHARED();
  const Checkpoint ck = sdxl_checkpoint();
  const ClipConfig& cl = ck.config().text_encoder(0);
  const ClipConfig& cg = ck.config().text_encoder(1);
  for (DType storage : {DType::F32, DType::F16}) {
    CAPTURE(dtype_name(storage));
    const double tol = storage == DType::F16 ? kF16Tol : kTol;
    auto c = [&](const std::string& what, const std::vector<float>& got, const std::string& ref) {
      return test::check_close(what, storage, got, arr(ref), tol);
    };
    auto wl = load_weights(test::ctx(), ck, cl.prefix, storage);
    auto wg = load_weights(test::ctx(), ck, cg.prefix, storage);
    nn::TextEncoder tl(test::ctx(), *wl, cl, 3), tg(test::ctx(), *wg, cg, 3);
    tl.encode(ids_of("tokens_l"), 1 + cl.context_skip);  // up to the layer SDXL reads
    c("CLIP-L embeddings", tl.embeddings(), "text_l_embeddings");
    c("CLIP-L layer 0", tl.layer_output(0), "text_l_layer00");
    c("CLIP-L layer 1 (penultimate = context)", tl.layer_output(cl.context_layer(1)), "text_l_hidden");
    // The last CLIP-L layer is in the file but SDXL does not run it.
    CHECK(error_of([&] { tl.layer_output(2); }).find("was not computed") != std::string::npos);
    c("bigG ln_final(last)", tg.encode(ids_of("tokens_g"), 1), "text_g_last_ln");
    c("bigG embeddings", tg.embeddings(), "text_g_embeddings");
    c("bigG layer 0", tg.layer_output(0), "text_g_layer00");
    c("bigG layer 1 (penultimate = context)", tg.layer_output(cg.context_layer(1)), "text_g_penultimate");
    c("bigG layer 2", tg.layer_output(2), "text_g_layer02");
  }
  // The conditioner stage, prompt by prompt: context = cat(CLIP-L, bigG), pooled from bigG.
  SdPipeline pipe(test::ctx(), pipeline_options());
  const test::Npy ctx = vec("cond_crossattn"), pooled = vec("text_g_pooled");
  const auto ps = prompts();
  for (int p = 0; p < (int)ps.size(); ++p) {
    const SdPipeline::TextOutput t = pipe.encode_text(ps[(size_t)p], 1, 1);
    check("context, prompt " + std::to_string(p), t.context, test::rows(ctx, p, 1));
    check("pooled, prompt " + std::to_string(p), t.pooled, test::rows(pooled, p, 1));
  }
  CHECK(test::ctx().validation_messages() == 0);
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
  GenerateParams portrait;  // no size fields set: original = target = the image's (H, W)
  portrait.width = 832, portrait.height = 1216;
  const SdxlSizeConditioning s = size_conditioning(portrait);
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

  // y = cat(pooled, sizes) for the three prompts, the pooled vectors from the conditioner.
  const std::vector<float> y = pipeline_y();
  CHECK((int64_t)y.size() == 3 * model_json().int_or("adm_in_channels", -1));
  check("y (cond_vector)", y, arr("cond_vector"));
  // Unconditional (empty negative prompt): sgm zeroes the text embeddings, sizes kept.
  std::vector<float> uy(48, 0.f);
  const std::vector<float> size = sdxl_size_embedding(s);
  uy.insert(uy.end(), size.begin(), size.end());
  check("y unconditional (uncond_vector)", uy, arr("uncond_vector"));
}

TEST_CASE("vksd info: describes an SDXL base file (both encoders, the UNet's SDXL parts, parameters)") {
  REQUIRE_SHARED();
  const fs::path cfg = fs::temp_directory_path() / ("vksd_sdxl_info_" + std::to_string(::getpid()) + ".json");
  std::ofstream(cfg) << config_json();
  const auto r = test::run_vksd("info " + test::shell_quote(sdxl_model()) + " --config " + test::shell_quote(cfg.string()));
  fs::remove(cfg);
  CHECK(r.code == 0);
  const Json j = model_json();
  const Json& counts = *j.find("parameter_counts");
  for (const std::string& want :
       {std::string("family     SDXL"), std::string("text encoders: 2"), std::string("OpenCLIP ViT-bigG/14"),
        std::string("vector input y (label_emb) 1584 = pooled text 48 + size conditioning 6 x 256"),
        std::string("context_dim 96, proj_in/out linear"), std::string("scale_factor 0.13025"),
        std::string("pooled 48 (text_projection)"), std::string("(SDXL default)")}) {
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
  CHECK(params("text encoder") + 77 == counts.int_or("clip_l", -2));
  CHECK(params("text encoder 2") + 1 == counts.int_or("clip_bigg", -2));
  if (r.code != 0) MESSAGE(r.out);
}

TEST_CASE("sdxl pooled vector: the first end token's row through the projection, in double") {
  // 2 prompts x 4 tokens x width 3, projection 3 -> 2; EOS = 9. Prompt 0 is padded with EOS
  // (CLIP-L style: the first EOS counts), prompt 1 with 0 (bigG style).
  const std::vector<int32_t> ids = {1, 5, 9, 9, 1, 9, 0, 0};
  std::vector<float> ln(2 * 4 * 3);
  for (size_t i = 0; i < ln.size(); ++i) ln[i] = (float)(0.25 * (double)i - 1.0);
  const std::vector<float> proj = {0.5f, -1.f, 2.f, 0.25f, -0.75f, 1.5f};  // [3, 2]
  const std::vector<float> got = pooled_text_embedding(ln, ids, 2, 4, 3, proj, 2, 9);
  REQUIRE(got.size() == 4);
  const int eos[2] = {2, 1};
  for (int b = 0; b < 2; ++b)
    for (int j = 0; j < 2; ++j) {
      double want = 0;
      for (int i = 0; i < 3; ++i) want += (double)ln[(size_t)(b * 4 + eos[b]) * 3 + i] * proj[(size_t)i * 2 + j];
      CHECK(got[(size_t)b * 2 + j] == doctest::Approx(want).epsilon(1e-7));
    }
  // No end token: named.
  CHECK(error_of([&] { pooled_text_embedding(ln, {1, 5, 6, 7, 1, 9, 0, 0}, 2, 4, 3, proj, 2, 9); })
            .find("prompt 0 has no end-of-text token") != std::string::npos);
  CHECK(error_of([&] { pooled_text_embedding(ln, ids, 2, 4, 3, proj, 3, 9); }).find("sizes do not match") !=
        std::string::npos);
  // cat on the channel axis: rows interleave a's then b's channels.
  CHECK(concat_channels({1, 2, 3, 4}, 2, {5, 6}, 1) == std::vector<float>{1, 2, 5, 3, 4, 6});
  CHECK(error_of([] { concat_channels({1, 2, 3, 4}, 2, {5, 6, 7}, 1); }).find("same rows") != std::string::npos);
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
  cfg.scale_factor = sdxl_checkpoint().config().vae.scale_factor;
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
  const ModelConfig cfg = sdxl_checkpoint().config();
  CHECK(cfg.schedule.timestep_spacing == "trailing");  // the family's default: sgm's choice
  const NoiseSchedule sched(cfg.schedule);
  auto sampler = Sampler::create(SamplerKind::Euler, sched, 4, -1, parse_timestep_spacing(cfg.schedule.timestep_spacing));
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
  const std::vector<float> y = pipeline_y();
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

TEST_CASE("sdxl-tiny: long prompts and emphasis go to both encoders as the same weighted 77-token chunks") {
  REQUIRE_SHARED();
  SdPipeline pipe(test::ctx(), pipeline_options());
  const int width = pipe.config().context_width(), pooled = pipe.config().pooled_width();
  std::string words75, words100;
  for (int i = 0; i < 100; ++i) (i < 75 ? words75 : words100) += "horse ";
  const std::string longer = words75 + words100;
  // 100 tokens: two chunks, each encoder's context for each, concatenated per row; the pooled
  // vector is the first chunk's (its 75 tokens alone give the same ids, hence the same values).
  const SdPipeline::TextOutput two = pipe.encode_text(longer, 1, 0), first = pipe.encode_text(words75, 1, 0);
  REQUIRE(two.context.size() == (size_t)2 * 77 * width);
  REQUIRE(first.context.size() == (size_t)77 * width);
  CHECK(std::vector<float>(two.context.begin(), two.context.begin() + 77 * width) == first.context);
  CHECK(two.pooled.size() == (size_t)pooled);
  CHECK(two.pooled == first.pooled);
  // Emphasis: each encoder's hidden states scaled per token, then each chunk's mean restored
  // (A1111's "Original"): another context with the same sum.
  const SdPipeline::TextOutput plain = pipe.encode_text("a horse riding", 1, 0),
                               weighted = pipe.encode_text("a (horse:1.5) riding", 1, 0);
  REQUIRE(plain.context.size() == weighted.context.size());
  CHECK(plain.context != weighted.context);
  double sp = 0, sw = 0;
  for (size_t i = 0; i < plain.context.size(); ++i) sp += plain.context[i], sw += weighted.context[i];
  // The mean is restored per encoder, so the sum over both encoders' channels is too.
  CHECK(sw == doctest::Approx(sp).epsilon(1e-4));
  CHECK(plain.pooled == weighted.pooled);  // the pooled vector is not emphasised (as A1111)
}
