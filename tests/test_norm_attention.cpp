// Normalisation (group_norm, layer_norm), attention and GEGLU against double-precision CPU
// references, at odd shapes and at the real Stable Diffusion 1.5 shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "runtime/context.h"
#include "runtime/error.h"
#include "runtime/graph.h"
#include "runtime/ops.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

// ---- attention -----------------------------------------------------------------------------

struct AttnCase {
  int64_t batch, lq, lk, heads, d;
  bool causal;
  DType dt;
  int sample_rows;  // 0: check every query row; else this many random rows (all heads, all batches)
};

// softmax(q kᵀ · scale) v for one (batch, query row, head), in double.
void attention_row_ref(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                       const AttnCase& c, int64_t b, int64_t i, int64_t h, double* out) {
  const int64_t w = c.heads * c.d;
  const double scale = 1.0 / std::sqrt((double)c.d);
  const int64_t kend = c.causal ? i + 1 : c.lk;
  std::vector<double> s((size_t)kend);
  double mx = -INFINITY;
  const float* qr = &q[(size_t)((b * c.lq + i) * w + h * c.d)];
  for (int64_t j = 0; j < kend; ++j) {
    const float* kr = &k[(size_t)((b * c.lk + j) * w + h * c.d)];
    double acc = 0;
    for (int64_t x = 0; x < c.d; ++x) acc += (double)qr[x] * kr[x];
    s[(size_t)j] = acc * scale;
    mx = std::max(mx, s[(size_t)j]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  for (int64_t x = 0; x < c.d; ++x) out[x] = 0;
  for (int64_t j = 0; j < kend; ++j) {
    const float* vr = &v[(size_t)((b * c.lk + j) * w + h * c.d)];
    double p = s[(size_t)j] / sum;
    for (int64_t x = 0; x < c.d; ++x) out[x] += p * vr[x];
  }
}

// Runs the op once and returns the relative L2 error over the checked rows; also the
// kernel's time of a second (warm) run in ms when `ms` is given.
double check_attention(const AttnCase& c, double* ms = nullptr) {
  auto& ctx = test::ctx();
  const int64_t w = c.heads * c.d;
  auto qv = test::round_to(c.dt, test::randn((size_t)(c.batch * c.lq * w), 1000 + c.d));
  auto kv = test::round_to(c.dt, test::randn((size_t)(c.batch * c.lk * w), 2000 + c.d));
  auto vv = test::round_to(c.dt, test::randn((size_t)(c.batch * c.lk * w), 3000 + c.d));
  Graph g(ctx);
  Tensor q = g.input({c.batch, c.lq, w}, c.dt), k = g.input({c.batch, c.lk, w}, c.dt),
         v = g.input({c.batch, c.lk, w}, c.dt);
  Tensor o = ops::attention(q, k, v, (int)c.heads, c.causal);
  g.keep(o);
  g.compile(ms != nullptr);
  g.upload(q, qv);
  g.upload(k, kv);
  g.upload(v, vv);
  g.run();
  auto ov = g.download(o);
  if (ms) {
    g.run();
    *ms = g.timings().at(0).ms;
  }
  std::vector<std::pair<int64_t, int64_t>> rows;  // (batch, query row)
  if (c.sample_rows == 0) {
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t i = 0; i < c.lq; ++i) rows.push_back({b, i});
  } else {
    std::mt19937 rng(77);
    rows.push_back({c.batch - 1, c.lq - 1});  // always the last row: the tail tile
    while ((int)rows.size() < c.sample_rows) rows.push_back({(int64_t)(rng() % c.batch), (int64_t)(rng() % c.lq)});
  }
  std::vector<float> got;
  std::vector<double> ref;
  std::vector<double> r((size_t)c.d);
  for (auto [b, i] : rows)
    for (int64_t h = 0; h < c.heads; ++h) {
      attention_row_ref(qv, kv, vv, c, b, i, h, r.data());
      for (int64_t x = 0; x < c.d; ++x) {
        ref.push_back(r[(size_t)x]);
        got.push_back(ov[(size_t)((b * c.lq + i) * w + h * c.d + x)]);
      }
    }
  return test::rel_l2(got, ref);
}

}  // namespace

// Tolerances: fp32 storage 1e-5 relative L2 (fp32 accumulation over up to 4096 keys),
// fp16 storage 2e-3 (the output is rounded to fp16; inputs are pre-rounded for the reference).
TEST_CASE("attention: odd shapes (Lq 37, Lk 53, D 24, 3 heads), batch 2, f32 and f16") {
  for (DType dt : {DType::F32, DType::F16}) {
    CAPTURE(dtype_name(dt));
    CHECK(check_attention({2, 37, 53, 3, 24, false, dt, 0}) < test::tol_for(dt));
    CHECK(check_attention({1, 5, 130, 2, 16, false, dt, 0}) < test::tol_for(dt));  // Lk past two blocks + tail
    CHECK(check_attention({1, 9, 9, 2, 32, true, dt, 0}) < test::tol_for(dt));     // causal
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention: every head dim the models use (16..160, 512) at small lengths") {
  for (int64_t d : {16, 32, 40, 64, 80, 160, 512}) {
    CAPTURE(d);
    CHECK(check_attention({1, 19, 41, d == 512 ? 1 : 2, d, false, DType::F32, 0}) < 1e-5);
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention: CLIP causal self-attention 77 x 77, 12 heads x 64") {
  CHECK(check_attention({1, 77, 77, 12, 64, true, DType::F32, 0}) < 1e-5);
  CHECK(check_attention({2, 77, 77, 12, 64, true, DType::F16, 0}) < 2e-3);
  CHECK(test::ctx().validation_messages() == 0);
}

// The big cases check 64 random query rows (over all heads) against the double reference.
TEST_CASE("attention: SD 1.5 self-attention 8 heads x 4096 tokens x 40 (64 sampled rows)") {
  double ms = 0;
  CHECK(check_attention({1, 4096, 4096, 8, 40, false, DType::F32, 64}, &ms) < 1e-5);
  double gflops = 4.0 * 8 * 4096.0 * 4096 * 40 / (ms * 1e6);
  MESSAGE("self-attention 8x4096x4096x40 f32: " << ms << " ms, " << gflops << " GFLOP/s");
  CHECK(check_attention({1, 4096, 4096, 8, 40, false, DType::F16, 64}) < 2e-3);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention: SD 1.5 cross-attention 4096 queries x 77 keys, 8 heads x 40 (64 sampled rows)") {
  CHECK(check_attention({2, 4096, 77, 8, 40, false, DType::F32, 64}) < 1e-5);
  CHECK(check_attention({1, 4096, 77, 8, 40, false, DType::F16, 64}) < 2e-3);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention: VAE mid-block single head 4096 tokens x 512 (64 sampled rows)") {
  double ms = 0;
  CHECK(check_attention({1, 4096, 4096, 1, 512, false, DType::F32, 64}, &ms) < 1e-5);
  double gflops = 4.0 * 4096.0 * 4096 * 512 / (ms * 1e6);
  MESSAGE("VAE attention 1x4096x4096x512 f32: " << ms << " ms, " << gflops << " GFLOP/s");
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("attention: bad shapes are errors") {
  auto& ctx = test::ctx();
  Graph g(ctx);
  Tensor q = g.input({1, 8, 30}, DType::F32), k = g.input({1, 9, 30}, DType::F32);
  Tensor k2 = g.input({1, 9, 32}, DType::F32);
  CHECK_THROWS_AS(ops::attention(q, k, k, 4), Error);   // 30 not divisible by 4 heads
  CHECK_THROWS_AS(ops::attention(q, k, k, 5), Error);   // head dim 6 not a multiple of 4
  CHECK_THROWS_AS(ops::attention(q, k2, k2, 3), Error); // width mismatch
  Tensor q2 = g.input({1, 8, 32}, DType::F32);
  CHECK_THROWS_AS(ops::attention(q2, k2, k2, 2, true), Error);  // causal needs Lq == Lk
  CHECK(ctx.validation_messages() == 0);
}
