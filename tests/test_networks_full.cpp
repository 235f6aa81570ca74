// The three networks at REAL Stable Diffusion 1.5 dimensions (UNet 320/640/1280 channels, 8
// heads -> head_dim 40/80/160, context 768, 2560-channel skip concatenations; CLIP 768 wide, 12
// heads, 12 layers; VAE 128..512 channels with the 512-wide single-head attention), with random
// weights in the real key layout, against the double-precision CPU reference of the same
// modules (tests/cpu_reference.*), which is itself first checked against the tiny reference
// vectors of the original code.
//
// Weights: every tensor is drawn from its own deterministic stream (seed = hash of its name),
// fan-in scaled (conv/linear ~ U with variance 1/fan_in, norms 1 + 0.1u, biases 0.05u) so that
// activations stay O(1) (measured rms 0.4..3.2 over the UNet's blocks). CLIP (469 MiB) and the
// VAE (319 MiB) are stored in fp32; the UNet (860 M parameters) is stored in fp16 (1.6 GiB
// instead of 3.3) with fp32 activations, and the CPU reference uses the SAME fp16-rounded
// values. Either way the comparison measures the device's fp32 arithmetic alone: relative L2
// <= 1e-4 per tensor, the project's bar for network parity.
//
// Geometry is small to keep the CPU reference fast (it, not lavapipe, dominates the time): UNet at
// an 8x8 latent (levels at 8, 4, 2, 1 pixels), VAE decode of an 8x8 latent to a 64x64 image, VAE
// encode 32x32 -> 4x4, CLIP one prompt of 77 tokens.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "runtime/model/checkpoint.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/memory.h"
#include "runtime/model/model_config.h"
#include "runtime/model/model_family.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/nn/unet.h"
#include "runtime/nn/vae.h"
#include "runtime/model/random_checkpoint.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "tests/cpu_reference.h"
#include "tests/full_size_util.h"
#include "tests/test_util.h"

using namespace vksd;

using namespace vksd::test::full;

// ---- the reference itself against the original code ------------------------------------------

TEST_CASE("cpu reference: reproduces the original code's tiny vectors") {
  REQUIRE_SHARED();
  Checkpoint ck = Checkpoint::open(test::vectors_dir() + "/model.safetensors");
  ModelConfig cfg = ck.config();
  cfg.unet.num_heads = 2;  // head counts are not in the shapes; model.json says 2 and 2
  cfg.clip.heads = 2;
  cpuref::WeightFn w = [&](const std::string& n) { return ck.read_f32(n); };
  auto vec = [](const std::string& n) { return test::load_npy(test::vectors_dir() + "/" + n + ".npy"); };

  auto tokens = vec("tokens");
  std::vector<int32_t> ids(tokens.data.begin(), tokens.data.end());
  std::vector<cpuref::Seq> layers;
  cpuref::Seq hidden = cpuref::clip_text(w, cfg.clip, ids, 3, &layers);
  CHECK(test::rel_l2(vec("text_hidden").data, hidden.d) < 1e-5);
  CHECK(test::rel_l2(vec("text_layer00").data, layers[0].d) < 1e-5);

  auto x = vec("unet_x"), th = vec("text_hidden");
  cpuref::Image xi(1, 4, (int)x.shape[2], (int)x.shape[3]);
  xi.d.assign(x.data.begin(), x.data.end());
  cpuref::Seq ctx(1, 77, (int)th.shape[2]);
  ctx.d.assign(th.data.begin(), th.data.begin() + ctx.d.size());
  std::map<std::string, cpuref::Image> blocks;
  cpuref::Image eps = cpuref::unet(w, cfg.unet, xi, {500.0}, ctx, &blocks);
  CHECK(test::rel_l2(vec("unet_time_embed").data, blocks["time_embed"].d) < 1e-5);
  CHECK(test::rel_l2(vec("unet_block_input_blocks_4").data, blocks["input_blocks.4"].d) < 1e-5);
  CHECK(test::rel_l2(vec("unet_block_output_blocks_2").data, blocks["output_blocks.2"].d) < 1e-5);
  CHECK(test::rel_l2(vec("unet_eps").data, eps.d) < 1e-5);

  auto zin = vec("vae_dec_in");
  cpuref::Image z(1, 4, (int)zin.shape[2], (int)zin.shape[3]);
  for (size_t i = 0; i < z.d.size(); ++i) z.d[i] = zin.data[i] / 0.18215f;
  CHECK(test::rel_l2(vec("vae_dec_out").data, cpuref::vae_decode(w, cfg.vae, z).d) < 1e-5);
  auto img = vec("vae_enc_in");
  cpuref::Image im(1, 3, (int)img.shape[2], (int)img.shape[3]);
  im.d.assign(img.data.begin(), img.data.end());
  cpuref::Image mom = cpuref::vae_encode_moments(w, cfg.vae, im);
  cpuref::Vec mean(mom.d.begin(), mom.d.begin() + (long)mom.d.size() / 2);
  CHECK(test::rel_l2(vec("vae_enc_mean").data, mean) < 1e-5);
}

// ---- tiny networks at geometries the vectors do not cover ------------------------------------

TEST_CASE("tiny networks vs the CPU reference: non-square latents, batch 2") {
  REQUIRE_SHARED();
  Checkpoint ck = Checkpoint::open(test::vectors_dir() + "/model.safetensors");
  ModelConfig cfg = ck.config();
  cfg.unet.num_heads = 2;
  cpuref::WeightFn w = [&](const std::string& n) { return ck.read_f32(n); };
  auto ws = load_weights(test::ctx(), ck, "", DType::F32);

  const int batch = 2, h = 6, wd = 10;  // not multiples of any tile, halved once by the UNet
  auto x = randu((size_t)batch * 4 * h * wd, 11, std::sqrt(3.0));
  auto ctx = randu((size_t)batch * 77 * cfg.unet.context_dim, 12, std::sqrt(3.0));
  const std::vector<float> t = {13.5f, 981.f};
  nn::UNet unet(test::ctx(), *ws, cfg.unet, batch, h, wd);
  unet.set_context(ctx);
  auto eps = unet.forward(x, t);
  cpuref::Image xi(batch, 4, h, wd);
  xi.d.assign(x.begin(), x.end());
  cpuref::Seq c(batch, 77, cfg.unet.context_dim);
  c.d.assign(ctx.begin(), ctx.end());
  check_close("tiny unet 6x10 batch 2", eps, cpuref::unet(w, cfg.unet, xi, {t[0], t[1]}, c).d);

  auto z = randu((size_t)batch * 4 * h * wd, 13, std::sqrt(3.0));
  nn::VaeDecoder dec(test::ctx(), *ws, cfg.vae, batch, h, wd);
  cpuref::Image zi(batch, 4, h, wd);
  zi.d.assign(z.begin(), z.end());
  check_close("tiny vae decode 6x10 batch 2", dec.decode(z), cpuref::vae_decode(w, cfg.vae, zi).d);

  auto img = randu((size_t)batch * 3 * 2 * h * 2 * wd, 14, 1.0);
  nn::VaeEncoder enc(test::ctx(), *ws, cfg.vae, batch, 2 * h, 2 * wd);
  cpuref::Image ii(batch, 3, 2 * h, 2 * wd);
  ii.d.assign(img.begin(), img.end());
  cpuref::Image mom = cpuref::vae_encode_moments(w, cfg.vae, ii);
  auto post = enc.encode(img);
  // moments [B, 2E, h, w] -> per-sample halves
  cpuref::Vec mean;
  const size_t half = mom.d.size() / batch / 2;
  for (int b = 0; b < batch; ++b) mean.insert(mean.end(), mom.d.begin() + (long)(2 * b * half), mom.d.begin() + (long)((2 * b + 1) * half));
  check_close("tiny vae encode mean 12x20 batch 2", post.mean, mean);
  CHECK(test::ctx().validation_messages() == 0);
}

// ---- full-size networks ------------------------------------------------------------------------

TEST_CASE("full size: SD 1.5 CLIP text encoder (768 wide, 12 heads, 12 layers)") {
  auto t0 = std::chrono::steady_clock::now();
  const ModelConfig cfg;  // SD 1.5 defaults
  RandomWeights rw(clip_layout(cfg.clip), DType::F32);
  auto ws = rw.upload(test::ctx(), kClipPrefix);
  // One prompt (batches are covered by the tiny parity test): BOS, 40 random ids, EOS, padded
  // with EOS as the tokenizer does.
  const int batch = 1, L = cfg.clip.max_length;
  std::vector<int32_t> ids((size_t)batch * L, cfg.clip.pad_token);
  for (int b = 0; b < batch; ++b) {
    const int len = 40;
    ids[(size_t)b * L] = cfg.clip.bos_token;
    for (int i = 1; i <= len; ++i) ids[(size_t)b * L + i] = (int32_t)(splitmix(b * 1000 + i) % 49406);
    ids[(size_t)b * L + len + 1] = cfg.clip.eos_token;
  }
  nn::NetOptions opts;
  opts.activations = DType::F32;
  nn::TextEncoder te(test::ctx(), *ws, cfg.clip, batch, opts);
  auto hidden = te.encode(ids);
  const double t_dev = seconds_since(t0);
  std::vector<cpuref::Seq> layers;
  cpuref::Seq ref = cpuref::clip_text(std::cref(rw), cfg.clip, ids, batch, &layers);
  check_close("clip layer 5", te.layer_output(5), layers[5].d);
  check_close("clip layer 11", te.layer_output(11), layers[11].d);
  check_close("clip last_hidden_state", hidden, ref.d);
  // clip_skip 2: final LayerNorm on layer 10's output (a second compiled graph).
  auto skip2 = te.encode(ids, 2);
  REQUIRE(skip2.size() == hidden.size());
  CHECK(test::rel_l2(skip2, hidden) > 0.01);
  MESSAGE("clip: weights " << mib(ws->bytes()) << ", activations " << mib(te.peak_bytes()) << "; device part "
                           << t_dev << " s, total " << seconds_since(t0) << " s");
  CHECK(test::ctx().validation_messages() == 0);
}

// A full-size UNet with random fp16 weights at an 8x8 latent, fp32 activations, against the
// CPU reference block by block; returns the uploaded weights (for memory figures).
static std::unique_ptr<WeightStore> check_unet_every_block(const ModelConfig& cfg, uint64_t seed, float t, const char* label) {
  auto t0 = std::chrono::steady_clock::now();
  RandomWeights rw(unet_layout(cfg.unet), DType::F16);
  auto ws = rw.upload(test::ctx(), kUNetPrefix);
  const double t_upload = seconds_since(t0);
  const int h = 8, w = 8;
  auto x = randu((size_t)4 * h * w, seed, std::sqrt(3.0));
  auto ctx = randu((size_t)77 * cfg.unet.context_dim, seed + 1, std::sqrt(3.0));
  nn::NetOptions opts;
  opts.activations = DType::F32;
  opts.keep_blocks = true;
  nn::UNet unet(test::ctx(), *ws, cfg.unet, 1, h, w, 77, opts);
  unet.set_context(ctx);
  auto out = unet.forward(x, {t});
  const double t_dev = seconds_since(t0);

  cpuref::Image xi(1, 4, h, w);
  xi.d.assign(x.begin(), x.end());
  cpuref::Seq c(1, 77, cfg.unet.context_dim);
  c.d.assign(ctx.begin(), ctx.end());
  std::map<std::string, cpuref::Image> blocks;
  cpuref::Image ref = cpuref::unet(std::cref(rw), cfg.unet, xi, {(double)t}, c, &blocks);
  for (auto& [name, img] : blocks) check_close(std::string(label) + " " + name, unet.block_output(name), img.d);
  check_close(std::string(label) + " out", out, ref.d);
  MESSAGE(label << ": weights " << mib(ws->bytes()) << " (fp16), activations at 8x8 " << mib(unet.peak_bytes())
                << "; upload " << t_upload << " s, device total " << t_dev << " s, with reference "
                << seconds_since(t0) << " s");
  return ws;
}

TEST_CASE("full size: SD 1.5 UNet at an 8x8 latent, every block (head_dim 40/80/160, 2560-ch concat)") {
  const ModelConfig cfg;
  auto ws = check_unet_every_block(cfg, 1, 777.25f, "sd1.5 unet");

  // Memory of the real thing: 64x64 latent (512x512 image), fp16 activations, batch 1 and 2
  // (classifier-free guidance runs both halves in one batch). Built and compiled, not run.
  for (int batch : {1, 2}) {
    nn::NetOptions big;
    big.activations = DType::F16;
    nn::UNet u(test::ctx(), *ws, cfg.unet, batch, 64, 64, 77, big);
    MESSAGE("unet 64x64 latent, batch " << batch << ", fp16: activations " << mib(u.peak_bytes()) << " + weights "
                                        << mib(ws->bytes()) << " = " << mib(u.peak_bytes() + ws->bytes()));
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("full size: SD 1.5 VAE decode 8x8 -> 64x64 and encode 32x32 -> 4x4 (512-wide attention)") {
  auto t0 = std::chrono::steady_clock::now();
  const ModelConfig cfg;
  RandomWeights rw(vae_layout(cfg.vae), DType::F32);
  auto ws = rw.upload(test::ctx(), kVaePrefix);
  const int lh = 8, lw = 8, f = cfg.vae.downsample_factor();
  nn::NetOptions opts;
  opts.activations = DType::F32;

  auto z = randu((size_t)cfg.vae.embed_dim * lh * lw, 3, std::sqrt(3.0));
  nn::VaeDecoder dec(test::ctx(), *ws, cfg.vae, 1, lh, lw, opts);
  auto image = dec.decode(z);
  cpuref::Image zi(1, cfg.vae.embed_dim, lh, lw);
  zi.d.assign(z.begin(), z.end());
  check_close("vae decode", image, cpuref::vae_decode(std::cref(rw), cfg.vae, zi).d);

  // The encoder at half that size: the CPU reference's time, not the device's, is the limit.
  const int ih = lh / 2 * f, iw = lw / 2 * f;
  auto img = randu((size_t)3 * ih * iw, 4, 1.0);
  nn::VaeEncoder enc(test::ctx(), *ws, cfg.vae, 1, ih, iw, opts);
  auto post = enc.encode(img);
  cpuref::Image ii(1, 3, ih, iw);
  ii.d.assign(img.begin(), img.end());
  cpuref::Image mom = cpuref::vae_encode_moments(std::cref(rw), cfg.vae, ii);
  const size_t half = mom.d.size() / 2;
  cpuref::Vec mean(mom.d.begin(), mom.d.begin() + (long)half), logvar(mom.d.begin() + (long)half, mom.d.end());
  for (double& v : logvar) v = std::min(20.0, std::max(-30.0, v));
  check_close("vae encode mean", post.mean, mean);
  check_close("vae encode logvar", post.logvar, logvar);
  MESSAGE("vae: weights " << mib(ws->bytes()) << ", decode activations at 8x8 " << mib(dec.peak_bytes()) << "; total "
                          << seconds_since(t0) << " s");

  // Memory at 512x512 (64x64 latent) with fp16 weights and activations. Built and compiled,
  // not run.
  auto ws16 = RandomWeights(vae_layout(cfg.vae), DType::F16).upload(test::ctx(), kVaePrefix);
  nn::VaeDecoder d64(test::ctx(), *ws16, cfg.vae, 1, 64, 64);
  nn::VaeEncoder e512(test::ctx(), *ws16, cfg.vae, 1, 512, 512);
  MESSAGE("vae decoder 64x64 -> 512x512, fp16: activations " << mib(d64.peak_bytes()) << " + weights "
                                                             << mib(ws16->bytes()));
  MESSAGE("vae encoder 512x512 -> 64x64, fp16: activations " << mib(e512.peak_bytes()) << " + weights "
                                                             << mib(ws16->bytes()));
  CHECK(test::ctx().validation_messages() == 0);
}

// ---- full-size SD 2.x (2.0 / 2.1): the same builders at the OpenCLIP ViT-H and SD 2.x UNet widths -

namespace {

// SD 2.x as v2-inference(-v).yaml describes it: OpenCLIP ViT-H/14 text tower (1024 wide, 16
// heads, 24 layers of which 23 are used, MLP 4096, exact GELU), UNet with context 1024, heads of
// 64 channels (5 / 10 / 20 heads) and linear proj_in / proj_out.
ModelConfig sd2_full_config() {
  ModelConfig c;
  apply_family_defaults(c, ModelFamily::SD2);
  c.clip.width = 1024;
  c.clip.layers = 24;
  c.clip.mlp_dim = 4096;
  c.clip.skip_last_layers = 1;
  c.unet.context_dim = 1024;
  c.unet.use_linear_in_transformer = true;
  return c;
}

}  // namespace

TEST_CASE("full size: SD 2.x OpenCLIP ViT-H text encoder (1024 wide, 16 heads, GELU, penultimate of 24 layers)") {
  auto t0 = std::chrono::steady_clock::now();
  const ModelConfig cfg = sd2_full_config();
  RandomWeights rw(clip_layout(cfg.clip), DType::F32);
  auto ws = rw.upload(test::ctx(), kClipPrefix);
  // BOS, 40 random ids, EOS, padded with 0 as open_clip does.
  const int L = cfg.clip.max_length, len = 40;
  std::vector<int32_t> ids((size_t)L, cfg.clip.pad_token);
  ids[0] = cfg.clip.bos_token;
  for (int i = 1; i <= len; ++i) ids[(size_t)i] = (int32_t)(splitmix(7000 + i) % 49406);
  ids[len + 1] = cfg.clip.eos_token;
  nn::NetOptions opts;
  opts.activations = DType::F32;
  nn::TextEncoder te(test::ctx(), *ws, cfg.clip, 1, opts);
  auto hidden = te.encode(ids);
  const double t_dev = seconds_since(t0);
  std::vector<cpuref::Seq> layers;
  cpuref::Seq ref = cpuref::clip_text(std::cref(rw), cfg.clip, ids, 1, &layers);
  REQUIRE(layers.size() == 23);
  check_close("openclip layer 11", te.layer_output(11), layers[11].d);
  check_close("openclip layer 22 (penultimate)", te.layer_output(22), layers[22].d);
  check_close("openclip ln_final(penultimate)", hidden, ref.d);
  MESSAGE("openclip: weights " << mib(ws->bytes()) << ", activations " << mib(te.peak_bytes()) << "; device part "
                               << t_dev << " s, total " << seconds_since(t0) << " s");
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("full size: SD 2.x UNet at an 8x8 latent, every block (64-channel heads, linear proj, context 1024)") {
  const ModelConfig cfg = sd2_full_config();
  // SD 2.x's published UNet size: 865,910,724 parameters.
  CHECK(parameter_count(unet_layout(cfg.unet)) == 865910724);
  check_unet_every_block(cfg, 3, 333.5f, "sd2 unet");
  CHECK(test::ctx().validation_messages() == 0);
}
