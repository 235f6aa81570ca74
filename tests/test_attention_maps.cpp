// Cross-attention maps (the viewer's "where words go" panel): ops::attention_probs against a
// double-precision CPU softmax(q kᵀ / sqrt(d)) averaged over heads; the tiny reference UNet's
// every cross-attention layer against the CPU from the layer's own input (norm2's output), the
// context and the checkpoint's to_q / to_k weights; the option costs nothing when off (the same
// dispatches and activation bytes as before it existed) and leaves eps bit-identical when on;
// the pipeline reports the maps per step and the job keeps them within its memory budget.
// Tolerances: fp32 relative L2 <= 1e-5, fp16 storage <= 2e-3 (tests/test_util.h); the
// probabilities over the tokens sum to 1 for every pixel.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>

#include "runtime/model/checkpoint.h"
#include "runtime/gpu/context.h"
#include "runtime/model/demo_model.h"
#include "runtime/diffusion/generation_job.h"
#include "runtime/gpu/graph.h"
#include "runtime/io/json.h"
#include "runtime/nn/unet.h"
#include "runtime/ops.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/model/weights.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

// P[j][i] = mean_h softmax_j(q[b, i, h] . k[b, j, h] * scale), in double.
std::vector<double> cpu_probs(const std::vector<float>& q, const std::vector<float>& k, int64_t lq, int64_t lk,
                              int heads, int64_t d, int64_t b) {
  const int64_t width = heads * d;
  const double scale = 1.0 / std::sqrt((double)d);
  std::vector<double> p((size_t)(lk * lq), 0.0), s((size_t)lk);
  for (int64_t i = 0; i < lq; ++i)
    for (int h = 0; h < heads; ++h) {
      const float* qi = q.data() + (b * lq + i) * width + h * d;
      double m = -1e300;
      for (int64_t j = 0; j < lk; ++j) {
        const float* kj = k.data() + (b * lk + j) * width + h * d;
        double acc = 0;
        for (int64_t c = 0; c < d; ++c) acc += (double)qi[c] * (double)kj[c];
        s[(size_t)j] = acc * scale;
        m = std::max(m, s[(size_t)j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < lk; ++j) sum += (s[(size_t)j] = std::exp(s[(size_t)j] - m));
      for (int64_t j = 0; j < lk; ++j) p[(size_t)(j * lq + i)] += s[(size_t)j] / sum / heads;
    }
  return p;
}

// Largest |sum over tokens - 1| over the pixels of a token-major [lk][lq] map.
double worst_row_sum(const std::vector<float>& p, int64_t lq, int64_t lk) {
  double worst = 0;
  for (int64_t i = 0; i < lq; ++i) {
    double s = 0;
    for (int64_t j = 0; j < lk; ++j) s += p[(size_t)(j * lq + i)];
    worst = std::max(worst, std::abs(s - 1.0));
  }
  return worst;
}

void check_op(DType dt, int64_t batch, int64_t lq, int64_t lk, int heads, int64_t d, int64_t b, float spread) {
  const int64_t width = heads * d;
  auto q = test::round_to(dt, test::randn((size_t)(batch * lq * width), 11 + lq, spread));
  auto k = test::round_to(dt, test::randn((size_t)(batch * lk * width), 12 + lk, spread));
  Graph g(test::ctx());
  Tensor tq = g.input({batch, lq, width}, dt), tk = g.input({batch, lk, width}, dt);
  Tensor p = ops::attention_probs(tq, tk, heads, b);
  CHECK(p.dtype() == DType::F32);
  CHECK(p.shape() == Shape{lk, lq});
  g.keep(p);
  g.compile();
  g.upload(tq, q);
  g.upload(tk, k);
  g.run();
  auto got = g.download(p);
  const double e = test::rel_l2(got, cpu_probs(q, k, lq, lk, heads, d, b));
  const double rows = worst_row_sum(got, lq, lk);
  MESSAGE("attention_probs " << std::string(dtype_name(dt)) << " Lq " << lq << " Lk " << lk << " " << heads << "x" << d
                             << " entry " << b << ": rel L2 " << e << ", worst |row sum - 1| " << rows);
  CHECK(e <= test::tol_for(dt));
  CHECK(rows <= 1e-5);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The tiny reference UNet's hyper-parameters as the generator recorded them (as
// test_parity_tiny.cpp reads them).
UNetConfig tiny_unet_config() {
  Json j = Json::parse(read_text(test::vectors_dir() + "/model.json"));
  const Json& u = *j.find("unet");
  UNetConfig c;
  c.in_channels = (int)u.find("in_channels")->as_int();
  c.out_channels = (int)u.find("out_channels")->as_int();
  c.model_channels = (int)u.find("model_channels")->as_int();
  c.channel_mult.clear();
  for (auto& v : u.find("channel_mult")->as_array()) c.channel_mult.push_back((int)v.as_int());
  c.num_res_blocks = (int)u.find("num_res_blocks")->as_int();
  c.attention_levels.clear();
  for (auto& lv : u.find("levels")->as_array()) c.attention_levels.push_back(lv.find("has_attention")->as_bool());
  c.num_heads = (int)u.find("num_heads")->as_int();
  c.transformer_depth = (int)u.find("transformer_depth")->as_int();
  c.context_dim = (int)u.find("context_dim")->as_int();
  c.gn_eps = (float)u.find("groupnorm")->find("eps")->as_number();
  c.ln_eps = (float)u.find("layernorm_eps")->as_number();
  return c;
}

test::Npy vec(const std::string& name) { return test::load_npy(test::vectors_dir() + "/" + name + ".npy"); }

// y [rows, out] = x [rows, in] · wᵀ (w [out, in]), in double, stored as float for cpu_probs
// (which works on float inputs); the rounding to float is 6e-8 relative, far below 1e-5.
std::vector<float> cpu_linear(const std::vector<float>& x, const std::vector<float>& w, int64_t rows, int64_t in,
                              int64_t out) {
  std::vector<float> y((size_t)(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int64_t c = 0; c < in; ++c) acc += (double)x[(size_t)(r * in + c)] * (double)w[(size_t)(o * in + c)];
      y[(size_t)(r * out + o)] = (float)acc;
    }
  return y;
}

// What the UNet looked like before attention maps existed (measured on the tiny checkpoint,
// 16 x 16 latent, context 77, before the option was added): maps off must give exactly this.
struct PlainCost {
  DType dt;
  int batch;
  size_t dispatches;
  VkDeviceSize peak;
};
const PlainCost kPlainTiny[] = {
    {DType::F32, 1, 338, 552720},
    {DType::F32, 2, 338, 1105424},
    {DType::F16, 1, 338, 276752},
    {DType::F16, 2, 338, 553232},
};

using test::demo_pipeline;

GenerateParams demo_params() {
  GenerateParams p;
  p.prompt = "red apple";
  p.width = p.height = 64;
  p.steps = 4;
  p.cfg_scale = 5;
  p.sampler = SamplerKind::Euler;
  p.seed = 7;
  return p;
}

struct MapRecorder : Observer {
  std::vector<std::vector<AttentionMap>> steps;
  std::vector<std::vector<float>> eps_cond;
  bool had_null = false;
  void on_step(const StepEvent& e) override {
    if (e.attention) steps.push_back(*e.attention);
    else had_null = true;
    eps_cond.emplace_back(e.eps_cond->begin(), e.eps_cond->end());
  }
};

}  // namespace

TEST_CASE("attention maps: attention_probs against CPU softmax(q k^T / sqrt d) over heads, odd shapes, f32 and f16") {
  for (DType dt : {DType::F32, DType::F16}) {
    if (dt == DType::F16 && !test::ctx().info().fp16) continue;
    check_op(dt, 2, 37, 77, 3, 12, 1, 1.f);  // the conditional entry of a guided batch
    check_op(dt, 2, 37, 77, 3, 12, 0, 1.f);
    check_op(dt, 1, 70, 154, 2, 16, 0, 1.5f);  // a two-chunk prompt, Lq not a multiple of 64
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention maps: attention_probs at SD 1.5 size, 4096 pixels x 77 tokens, 8 heads x 40") {
  for (DType dt : {DType::F32, DType::F16}) {
    if (dt == DType::F16 && !test::ctx().info().fp16) continue;
    check_op(dt, 2, 4096, 77, 8, 40, 1, 0.6f);
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention maps: attention_probs bad arguments are errors") {
  Graph g(test::ctx());
  Tensor q = g.input({2, 16, 24}, DType::F32), k = g.input({2, 77, 24}, DType::F32);
  CHECK_THROWS(ops::attention_probs(q, k, 5, 0));   // 24 not divisible into 5 heads
  CHECK_THROWS(ops::attention_probs(q, k, 2, 2));   // no batch entry 2
  CHECK_THROWS(ops::attention_probs(q, g.input({2, 77, 20}, DType::F32), 2, 0));
  Tensor wide = g.input({2, 16, 48}, DType::F32);
  CHECK_THROWS(ops::attention_probs(wide, g.input({2, 5000, 48}, DType::F32), 12, 0));  // loop budget
}

TEST_CASE("attention maps: tiny reference UNet, every cross-attention layer against the CPU from its own input") {
  REQUIRE_SHARED();
  const UNetConfig cfg = tiny_unet_config();
  Checkpoint ck = Checkpoint::open(test::vectors_dir() + "/model.safetensors");
  auto x = vec("unet_batch_x"), t = vec("unet_batch_t"), ctx = vec("text_hidden");
  const int64_t L = 77, D = cfg.context_dim;
  // Batch 2 = [negative, prompt] as the pipeline runs guidance: contexts rows 1 and 2.
  std::vector<float> context(ctx.data.begin() + L * D, ctx.data.begin() + 3 * L * D);
  for (DType dt : {DType::F32, DType::F16}) {
    if (dt == DType::F16 && !test::ctx().info().fp16) continue;
    auto weights = load_weights(test::ctx(), ck, "", dt);
    nn::NetOptions o;
    o.attention_maps = true;
    o.keep_blocks = true;
    nn::UNet unet(test::ctx(), *weights, cfg, 2, (int)x.shape[2], (int)x.shape[3], (int)L, o);
    unet.set_context(context);
    unet.forward(x.data, t.data);
    const auto& layers = unet.attention_layers();
    // Levels 0 and 1 have attention, 2 res blocks each: input 1, 2, 4, 5; middle; output 0-5.
    REQUIRE(layers.size() == 11);
    CHECK(layers[0].block == "input 1");
    CHECK(layers[0].level == 0);
    CHECK(layers[4].block == "middle");
    CHECK(layers[4].level == 1);
    CHECK(layers[10].block == "output 5");
    // The prompt's context as the device holds it (the last batch entry).
    const auto cond = test::round_to(dt, std::vector<float>(context.begin() + L * D, context.end()));
    double worst = 0;
    for (size_t li = 0; li < layers.size(); ++li) {
      const auto& ly = layers[li];
      CHECK(ly.tokens == L);
      const int64_t hw = (int64_t)ly.height * ly.width;
      CHECK(hw == (int64_t)(x.shape[2] >> ly.level) * (x.shape[3] >> ly.level));
      // norm2's output for both batch entries; the prompt's is the second half.
      auto q_in = unet.block_output(ly.scope + ".norm2");
      const int64_t C = (int64_t)q_in.size() / (2 * hw);
      std::vector<float> q_in_cond(q_in.begin() + hw * C, q_in.end());
      const std::string w = std::string(kUNetPrefix) + ly.scope + ".attn2.";
      auto wq = test::round_to(dt, ck.read_f32(w + "to_q.weight"));
      auto wk = test::round_to(dt, ck.read_f32(w + "to_k.weight"));
      REQUIRE(wq.size() == (size_t)(C * C));
      REQUIRE(wk.size() == (size_t)(C * D));
      // q and k as the device stores them (rounded to the activation type), then the softmax.
      auto q = test::round_to(dt, cpu_linear(q_in_cond, wq, hw, C, C));
      auto k = test::round_to(dt, cpu_linear(cond, wk, L, D, C));
      const int heads = cfg.heads_for((int)C);
      const auto ref = cpu_probs(q, k, hw, L, heads, C / heads, 0);
      const auto got = unet.attention_probs(li);
      REQUIRE(got.size() == ref.size());
      const double e = test::rel_l2(got, ref);
      worst = std::max(worst, e);
      CHECK_MESSAGE(e <= test::tol_for(dt), ly.block << ": rel L2 " << e);
      CHECK(worst_row_sum(got, hw, L) <= 1e-5);
    }
    MESSAGE("tiny UNet cross-attention maps [" << std::string(dtype_name(dt)) << "]: worst rel L2 over " << layers.size()
                                               << " layers " << worst);
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention maps: off costs nothing (same dispatches and activation bytes), on leaves eps bit-identical") {
  REQUIRE_SHARED();
  const UNetConfig cfg = tiny_unet_config();
  Checkpoint ck = Checkpoint::open(test::vectors_dir() + "/model.safetensors");
  auto x = vec("unet_batch_x"), t = vec("unet_batch_t"), ctx = vec("text_hidden");
  const int64_t L = 77, D = cfg.context_dim;
  for (const PlainCost& c : kPlainTiny) {
    if (c.dt == DType::F16 && !test::ctx().info().fp16) continue;
    auto weights = load_weights(test::ctx(), ck, "", c.dt);
    nn::UNet off(test::ctx(), *weights, cfg, c.batch, 16, 16, (int)L);
    CHECK(off.graph().dispatch_count() == c.dispatches);
    CHECK(off.peak_bytes() == c.peak);
    CHECK(off.attention_layers().empty());
    nn::NetOptions o;
    o.attention_maps = true;
    nn::UNet on(test::ctx(), *weights, cfg, c.batch, 16, 16, (int)L, o);
    // One dispatch per cross-attention layer, and their maps as the only extra memory.
    CHECK(on.graph().dispatch_count() == c.dispatches + on.attention_layers().size());
    VkDeviceSize maps = 0;
    for (const auto& ly : on.attention_layers()) maps += (VkDeviceSize)ly.tokens * ly.height * ly.width * 4;
    MESSAGE(std::string(dtype_name(c.dt)) << " batch " << c.batch << ": peak " << off.peak_bytes() << " off, " << on.peak_bytes()
                             << " on (maps " << maps << " bytes)");
    CHECK(on.peak_bytes() >= off.peak_bytes());
    CHECK(on.peak_bytes() <= off.peak_bytes() + maps + 65536);
    std::vector<float> xs(x.data.begin(), x.data.begin() + (int64_t)x.data.size() / 2 * c.batch);
    std::vector<float> ts(t.data.begin(), t.data.begin() + c.batch);
    std::vector<float> context(ctx.data.begin() + L * D, ctx.data.begin() + (1 + c.batch) * L * D);
    off.set_context(context);
    on.set_context(context);
    CHECK(off.forward(xs, ts) == on.forward(xs, ts));
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention maps: the pipeline reports them per step, the job keeps them within its budget") {
  auto pipe = demo_pipeline();
  GenerateParams p = demo_params();
  MapRecorder plain;
  const auto res_off = pipe->generate(p, &plain);
  CHECK(plain.had_null);
  CHECK(plain.steps.empty());
  p.attention_maps = true;
  MapRecorder rec;
  const auto res_on = pipe->generate(p, &rec);
  CHECK(res_on.image.pixels == res_off.image.pixels);  // the maps change nothing
  CHECK(rec.eps_cond == plain.eps_cond);
  REQUIRE(rec.steps.size() == 4);
  // The demo UNet: attention at levels 0 (8x8) and 1 (4x4), one res block each, and the middle
  // block at level 2 (2x2): input 1, input 3, middle, output 2-3 (level 1), output 4-5 (level 0).
  const auto& maps = rec.steps[0];
  REQUIRE(maps.size() == 7);
  CHECK(maps[0].block == "input 1");
  CHECK(maps[0].height == 8);
  CHECK(maps[2].block == "middle");
  CHECK(maps[2].height == 2);
  CHECK(maps[6].block == "output 5");
  CHECK(maps[6].level == 0);
  for (const auto& m : maps) {
    CHECK(m.tokens == 77);
    CHECK(m.probs.size() == (size_t)m.tokens * m.height * m.width);
    CHECK(worst_row_sum(m.probs, (int64_t)m.height * m.width, m.tokens) <= 1e-3);
  }
  // The maps change from step to step.
  CHECK(test::rel_l2(rec.steps[3][0].probs, rec.steps[0][0].probs) > 1e-3);

  // The job: per-layer maps within the budget, per-level means on every step.
  GenerationJob job(*pipe);
  JobOptions jo;
  jo.attention_layer_budget = 100000;  // one step of per-layer maps is 75 KB: room for one
  job.start(p, jo);
  job.wait();
  REQUIRE(job.state() == JobState::Done);
  REQUIRE(job.steps_recorded() == 4);
  size_t total = 0;
  for (int k = 0; k < 4; ++k) {
    auto r = job.record_ptr(k);
    total += r->bytes();
    REQUIRE(r->attention_levels.size() == 3);
    CHECK(r->attention_levels[0].block == "level 0");
    CHECK(r->attention_levels[0].layers == 3);
    CHECK(r->attention_levels[2].layers == 1);
    // The level-0 mean is the mean of that step's three level-0 layers.
    const auto& ev = rec.steps[(size_t)k];
    std::vector<float> mean(ev[0].probs.size(), 0.f);
    for (const auto& m : ev)
      if (m.level == 0)
        for (size_t i = 0; i < mean.size(); ++i) mean[i] += m.probs[i] / 3;
    CHECK(test::rel_l2(r->attention_levels[0].probs, mean) <= 1e-6);
    CHECK(worst_row_sum(r->attention_levels[1].probs, 16, 77) <= 1e-3);
    if (k == 3) {
      REQUIRE(r->attention.size() == 7);
      CHECK(r->attention[0].probs == ev[0].probs);
    } else {
      CHECK(r->attention.empty());  // fell out of the budget
    }
  }
  CHECK(job.timeline_bytes() == total);
  // The default budget keeps every step of the demo model.
  job.start(p);
  job.wait();
  for (int k = 0; k < job.steps_recorded(); ++k) CHECK(job.record_ptr(k)->attention.size() == 7);
  CHECK(test::ctx().validation_messages() == 0);
}
