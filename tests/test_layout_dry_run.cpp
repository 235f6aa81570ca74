// The checkpoint layouts (runtime/model/sd1_layout.h) are dry runs of the network builders on a
// shapes-only Graph (runtime/gpu/graph.h): no Vulkan device, nothing recorded. That they list
// exactly what real checkpoints hold is checked against the reference files elsewhere
// (test_checkpoint: tensor count and parameter counts of the tiny SD 1.x and SD 1.5;
// test_parity_sd2; test_unet_sdxl_tiny: the 680 tensors exactly); this file checks the dry run
// itself.
#include <doctest/doctest.h>

#include "runtime/error.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/nn/blocks.h"
#include "runtime/ops.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("shapes-only graph: ops give their output shapes and record nothing, without a device") {
  Graph g;  // no Context anywhere
  CHECK(g.shapes_only());
  Tensor x = g.input({2, 4, 8, 8}, DType::F32, "x");
  Tensor w = g.input({8, 4, 3, 3}, DType::F32, "w");
  Tensor y = ops::conv2d(x, w, Tensor{}, ops::Conv2d::down());
  CHECK(y.shape() == Shape{2, 8, 4, 4});
  Tensor t = ops::nchw_to_nlc(y);
  CHECK(t.shape() == Shape{2, 16, 8});
  Tensor a = ops::attention(t, t, t, /*heads=*/2);
  CHECK(a.shape() == Shape{2, 16, 8});
  CHECK(g.dispatch_count() == 0);
  CHECK(contains(test::error_of([&] { g.compile(); }), "shapes-only"));
  CHECK(contains(test::error_of([&] { g.context(); }), "shapes-only"));
}

TEST_CASE("layout recorder: the weights a builder binds, once each, with the shapes it states") {
  Graph g;
  const nn::LayoutRecorder rec;
  const nn::Scope s = nn::Scope::root(g, rec, "net.");
  Tensor x = g.input({1, 5, 3}, DType::F32);
  Tensor h = nn::layer_norm(s.sub("norm"), x, 1e-5f);
  h = nn::linear(s.sub("fc"), h, 7);
  h = nn::linear_without_bias(s.sub("q"), h, 2);
  nn::layer_norm(s.sub("norm"), x, 1e-5f);  // the same weights again: listed once
  CHECK(h.shape() == Shape{1, 5, 2});
  const std::vector<TensorSpec> want = {{"net.norm.weight", {3}}, {"net.norm.bias", {3}}, {"net.fc.weight", {7, 3}},
                                        {"net.fc.bias", {7}},    {"net.q.weight", {2, 7}}};
  REQUIRE(rec.specs().size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK(rec.specs()[i].name == want[i].name);
    CHECK(rec.specs()[i].shape == want[i].shape);
  }
  // One name with two shapes is a builder bug, named.
  Tensor x2 = g.input({1, 5, 4}, DType::F32);
  CHECK(contains(test::error_of([&] { nn::layer_norm(s.sub("norm"), x2, 1e-5f); }),
                       "'net.norm.weight' is used with shape [4] and [3]"));
}

TEST_CASE("layouts: SD 1.5's three networks in the order their builders use the weights") {
  const ModelConfig sd15;
  const auto unet = unet_layout(sd15.unet), vae = vae_layout(sd15.vae), clip = clip_layout(sd15.clip);
  // The published parameter counts (diffusers: unet 859,520,964; vae 83,653,863; CLIP-L text
  // model 123,060,480).
  CHECK(parameter_count(unet) == 859520964);
  CHECK(parameter_count(vae) == 83653863);
  CHECK(parameter_count(clip) == 123060480);
  CHECK(unet.front().name == "model.diffusion_model.time_embed.0.weight");
  CHECK(unet.back().name == "model.diffusion_model.out.2.bias");
  CHECK(unet.back().shape == Shape{4});
  CHECK(clip.front().name == "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight");
  CHECK(clip.back().name == "cond_stage_model.transformer.text_model.final_layer_norm.bias");
  // The layer the model skips (SD 2.x's last OpenCLIP block) is still in the checkpoint.
  ClipConfig skipping = sd15.clip;
  skipping.skip_last_layers = 1;
  CHECK(clip_layout(skipping).size() == clip.size());
}

TEST_CASE("layouts: the head count shapes no weight (vksd info lists files whose heads are not known)") {
  ClipConfig c;
  c.width = 32, c.mlp_dim = 128, c.layers = 2;  // 32 wide: not divisible into CLIP-L's 12 heads
  const auto a = clip_layout(c);
  c.heads = 1;
  CHECK(parameter_count(a) == parameter_count(clip_layout(c)));
  UNetConfig u;
  u.model_channels = 32, u.channel_mult = {1, 2}, u.attention_levels = {true, true}, u.context_dim = 24;
  u.num_head_channels = 64;  // wider than the channels
  const auto b = unet_layout(u);
  u.num_head_channels = -1, u.num_heads = 1;
  CHECK(parameter_count(b) == parameter_count(unet_layout(u)));
}

TEST_CASE("vksd info works with no Vulkan driver at all (the layouts need no device)") {
  REQUIRE_SHARED();
  if (test::vksd_binary().empty()) return;
  const std::string no_driver = "env VK_ICD_FILENAMES=/nonexistent.json VK_DRIVER_FILES=/nonexistent.json";
  // The environment does hide every driver: a command that needs a device fails.
  CHECK(test::run_vksd("devices", no_driver).code != 0);
  const auto r = test::run_vksd("info " + test::shell_quote(test::vectors_dir() + "/model.safetensors"), no_driver);
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(contains(r.out, "1577828"));  // UNet parameters, as the reference's model.json counts them
}
