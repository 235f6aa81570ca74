// The UNet's SDXL features against the ORIGINAL SDXL code (Stability's generative-models 0.1.0):
// per-level transformer depth (level 0 without attention, level 1 and the middle block with two
// BasicTransformerBlocks each), 16-channel heads, linear proj_in/out and the vector input y
// (label_emb added to the time embedding), on the tiny random SDXL-architecture checkpoint of
// ../shared/vectors/sdxl-tiny (README there). The hyper-parameters are read from the
// generator's model.json, independently of vksd's own architecture inference.
//
// Tolerances as in test_parity_tiny.cpp: fp32 relative L2 <= 1e-4 per tensor (measured ~1e-6),
// fp16 storage <= 1e-2.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "runtime/diffusion/denoiser.h"
#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/io/json.h"
#include "runtime/model/model_config.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "runtime/nn/unet.h"
#include "tests/parity_util.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

const char* kSet = "sdxl-tiny";

test::Npy vec(const std::string& name) { return test::set_npy(kSet, name); }

UNetConfig sdxl_tiny_unet() {
  std::ifstream f(test::vector_set_dir(kSet) + "/model.json");
  std::stringstream ss;
  ss << f.rdbuf();
  const Json j = Json::parse(ss.str());
  const Json& u = *j.find("unet");
  auto ints = [](const Json& a) {
    std::vector<int> r;
    for (auto& v : a.as_array()) r.push_back((int)v.as_int());
    return r;
  };
  UNetConfig c;
  c.in_channels = (int)u.find("in_channels")->as_int();
  c.out_channels = (int)u.find("out_channels")->as_int();
  c.model_channels = (int)u.find("model_channels")->as_int();
  c.channel_mult = ints(*u.find("channel_mult"));
  c.num_res_blocks = (int)u.find("num_res_blocks")->as_int();
  // The reference's attention_resolutions: the downsampling factors (2^level) with attention.
  const std::vector<int> ds = ints(*u.find("attention_resolutions"));
  c.attention_levels.clear();
  for (int l = 0; l < (int)c.channel_mult.size(); ++l)
    c.attention_levels.push_back(std::find(ds.begin(), ds.end(), 1 << l) != ds.end());
  c.transformer_depths = ints(*u.find("transformer_depth"));
  c.num_head_channels = (int)u.find("num_head_channels")->as_int();
  c.use_linear_in_transformer = u.find("use_linear_in_transformer")->as_bool();
  c.context_dim = (int)u.find("context_dim")->as_int();
  c.adm_in_channels = (int)u.find("adm_in_channels")->as_int();
  return c;
}

// The checkpoint's UNet tensors, under their original names.
std::unique_ptr<WeightStore> sdxl_tiny_unet_weights(DType storage) {
  SafetensorsFile f(test::vector_set_dir(kSet) + "/model.safetensors");
  auto ws = std::make_unique<WeightStore>(test::ctx(), storage);
  for (const StTensor& t : f.tensors())
    if (t.name.rfind("model.diffusion_model.", 0) == 0) ws->add(t.name, t.shape, f.to_f32(t).data());
  return ws;
}

double tol(DType dt) { return dt == DType::F16 ? 1e-2 : 1e-4; }

const DType kStorages[] = {DType::F32, DType::F16};

}  // namespace

TEST_CASE("parity sdxl-tiny: UNet with per-level depth and the vector input y, every block") {
  REQUIRE_SHARED();
  const UNetConfig cfg = sdxl_tiny_unet();
  REQUIRE(cfg.depth_at(0) == 0);
  REQUIRE(cfg.depth_at(1) == 2);
  REQUIRE(cfg.middle_depth() == 2);
  auto x = vec("unet_x"), t = vec("unet_t"), ctx = vec("cond_crossattn"), y = vec("cond_vector");
  for (DType dt : kStorages) {
    auto weights = sdxl_tiny_unet_weights(dt);
    nn::NetOptions opts;
    opts.keep_blocks = true;
    nn::UNet unet(test::ctx(), *weights, cfg, 1, (int)x.shape[2], (int)x.shape[3], 77, opts);
    REQUIRE(unet.has_y());
    unet.set_context(test::rows(ctx, 0, 1));
    unet.set_y(test::rows(y, 0, 1));
    auto out = unet.forward(x.data, t.data);
    test::check_close("unet_t_emb", dt, unet.block_output("t_emb"), vec("unet_t_emb").data, tol(dt));
    test::check_close("unet_time_embed", dt, unet.block_output("time_embed"), vec("unet_time_embed").data, tol(dt));
    test::check_close("unet_label_emb", dt, unet.block_output("label_emb"), vec("unet_label_emb").data, tol(dt));
    for (int i = 0; i < 6; ++i) {
      const std::string n = "input_blocks." + std::to_string(i);
      test::check_close(n, dt, unet.block_output(n), vec("unet_block_input_blocks_" + std::to_string(i)).data, tol(dt));
    }
    test::check_close("middle_block", dt, unet.block_output("middle_block"), vec("unet_block_middle_block").data, tol(dt));
    for (int i = 0; i < 6; ++i) {
      const std::string n = "output_blocks." + std::to_string(i);
      test::check_close(n, dt, unet.block_output(n), vec("unet_block_output_blocks_" + std::to_string(i)).data, tol(dt));
    }
    test::check_close("unet_out", dt, out, vec("unet_out").data, tol(dt));
    test::check_close("unet_out_t777p5", dt, unet.forward(x.data, {777.5f}), vec("unet_out_t777p5").data, tol(dt));
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("parity sdxl-tiny: UNet batch 2 (per-sample t, context, y) and the zeroed unconditional branch") {
  REQUIRE_SHARED();
  const UNetConfig cfg = sdxl_tiny_unet();
  auto ctx = vec("cond_crossattn"), y = vec("cond_vector");
  auto weights = sdxl_tiny_unet_weights(DType::F32);
  {
    auto x = vec("unet_batch_x"), t = vec("unet_batch_t");
    nn::UNet unet(test::ctx(), *weights, cfg, 2, (int)x.shape[2], (int)x.shape[3]);
    unet.set_context(test::rows(ctx, 1, 2));
    unet.set_y(test::rows(y, 1, 2));
    test::check_close("unet_batch_out", DType::F32, unet.forward(x.data, t.data), vec("unet_batch_out").data, 1e-4);
  }
  {
    auto x = vec("unet_x"), t = vec("unet_t");
    nn::UNet unet(test::ctx(), *weights, cfg, 1, (int)x.shape[2], (int)x.shape[3]);
    unet.set_context(std::vector<float>((size_t)77 * cfg.context_dim, 0.f));
    unet.set_y(vec("uncond_vector").data);
    test::check_close("unet_out_uncond", DType::F32, unet.forward(x.data, t.data), vec("unet_out_uncond").data, 1e-4);
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("sdxl-tiny: the Denoiser's guided step 0 (context and y per branch) matches the reference Euler run") {
  // sgm's VanillaCFG on the batch [uc; c]: uc = zeroed text context and the uncond vector, c =
  // prompt 0's context and vector. Its denoised D = D_u + 7.5 (D_c - D_u) with D = x - sigma eps
  // is x - sigma * (guided eps), so the guided eps is (x_T - D) / sigma_0.
  REQUIRE_SHARED();
  const UNetConfig cfg = sdxl_tiny_unet();
  auto weights = sdxl_tiny_unet_weights(DType::F32);
  auto x_in = vec("euler_step0_unet_in"), ts = vec("euler_timesteps"), sig = vec("euler_sigmas");
  auto xT = vec("euler_xT"), den = vec("euler_step0_denoised");
  GuidedConditioning c;
  c.guided = true;
  c.cond.context = test::rows(vec("cond_crossattn"), 0, 1);
  c.cond.y = test::rows(vec("cond_vector"), 0, 1);
  c.uncond.context.assign(c.cond.context.size(), 0.f);
  c.uncond.y = vec("uncond_vector").data;
  c.cond.tokens = c.uncond.tokens = 77;
  c.cond.width = c.uncond.width = cfg.context_dim;
  nn::UNet unet(test::ctx(), *weights, cfg, 2, (int)x_in.shape[2], (int)x_in.shape[3]);
  Denoiser::Options o;
  o.cfg_scale = 7.5;
  o.observed = true;
  Denoiser d(unet, c, cfg.out_channels, o);
  const Latent e = d(Latent(x_in.data.begin(), x_in.data.end()), ts.data[0]);
  test::check_close("euler_step0_out_uncond", DType::F32, d.out_uncond(), vec("euler_step0_out_uncond").data, 1e-4);
  test::check_close("euler_step0_out_cond", DType::F32, d.out_cond(), vec("euler_step0_out_cond").data, 1e-4);
  std::vector<float> guided(e.begin(), e.end()), ref(e.size());
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = (float)(((double)xT.data[i] - den.data[i]) / sig.data[0]);
  test::check_close("guided eps (from euler_step0_denoised)", DType::F32, guided, ref, 1e-4);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("Denoiser: a y the UNet does not take, or a UNet's y missing from the conditioning, is an error") {
  REQUIRE_SHARED();
  const UNetConfig cfg = sdxl_tiny_unet();
  auto weights = sdxl_tiny_unet_weights(DType::F32);
  nn::UNet unet(test::ctx(), *weights, cfg, 1, 8, 8);
  GuidedConditioning c;
  c.cond.context.assign((size_t)77 * cfg.context_dim, 0.f);
  c.cond.tokens = 77, c.cond.width = cfg.context_dim;
  try {
    Denoiser d(unet, c, 4, {});
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("vector input y") != std::string::npos);
  }
}

TEST_CASE("UNet vector input: a y of the wrong size, or a y for a UNet without one, is an error naming set_y") {
  REQUIRE_SHARED();
  const UNetConfig cfg = sdxl_tiny_unet();
  auto weights = sdxl_tiny_unet_weights(DType::F32);
  nn::UNet unet(test::ctx(), *weights, cfg, 1, 8, 8);
  unet.set_context(std::vector<float>((size_t)77 * cfg.context_dim, 0.f));
  CHECK(test::error_of([&] { unet.forward(std::vector<float>(4 * 64), {1.f}); }).find("set_y") != std::string::npos);
  CHECK(test::error_of([&] { unet.set_y(std::vector<float>(5)); }).find("set_y") != std::string::npos);
  UNetConfig wrong = cfg;
  wrong.transformer_depths = {0, 2, 2};
  CHECK(test::error_of([&] { nn::UNet(test::ctx(), *weights, wrong, 1, 8, 8); }).find("transformer_depths") != std::string::npos);
}

TEST_CASE("sdxl-tiny: the UNet layout with per-level depth and label_emb is exactly the checkpoint's UNet tensors") {
  REQUIRE_SHARED();
  const UNetConfig cfg = sdxl_tiny_unet();
  std::map<std::string, Shape> want;
  for (const TensorSpec& s : unet_layout(cfg)) want[s.name] = s.shape;
  std::map<std::string, Shape> have;
  SafetensorsFile f(test::vector_set_dir(kSet) + "/model.safetensors");
  for (const StTensor& t : f.tensors())
    if (t.name.rfind(kUNetPrefix, 0) == 0) have[t.name] = t.shape;
  CHECK(want.size() == have.size());
  for (const auto& [name, shape] : have) {
    auto it = want.find(name);
    CHECK_MESSAGE(it != want.end(), "not in the layout: " << name);
    if (it != want.end()) CHECK_MESSAGE(it->second == shape, name);
  }
  // The generator's own count (model.json parameter_counts.unet).
  CHECK(parameter_count(unet_layout(cfg)) == 2218180);
}
