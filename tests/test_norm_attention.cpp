// Normalisation (group_norm, layer_norm), attention and GEGLU against double-precision CPU
// references, at odd shapes and at the real Stable Diffusion 1.5 shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/gpu/graph.h"
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

// The kernel the last check_attention's graph dispatched.
std::string attention_kernel;

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
  attention_kernel = g.dispatches().back().kernel;
  g.keep(o);
  g.compile(ms != nullptr);
  g.upload(q, qv);
  g.upload(k, kv);
  g.upload(v, vv);
  g.run();
  auto ov = g.download(o);
  if (ms) {
    std::clock_t c0 = std::clock();
    g.run();
    double cpu_s = (double)(std::clock() - c0) / CLOCKS_PER_SEC;
    *ms = g.timings().at(0).ms;
    // The wall time depends on what else the (shared) machine runs; the process CPU time
    // (all of lavapipe's worker threads) shows the work itself.
    MESSAGE("  warm run: " << *ms << " ms wall, " << cpu_s << " s CPU over " << ctx.info().name);
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
    // query tiles per head not a multiple of the subgroup (padded per head), 5 heads, batch 3
    CHECK(check_attention({3, 21, 67, 5, 8, false, dt, 0}) < test::tol_for(dt));
  }
  CHECK(test::ctx().validation_messages() == 0);
}

// attention_coop.comp in its emulated build (test::with_emulated_matrix_unit): the staging of
// queries, keys (transposed) and values, the zero padding of the head dim, the masks, the
// online softmax and the per-row rescale of the output tiles are the GPU build's.
TEST_CASE("attention on the matrix unit (emulated build): odd shapes, causal, SD's head dims, every row") {
  test::with_emulated_matrix_unit([] {
    // Head dims 24 (padded to 32), 16 over five key blocks and a tail, 40 (SD 1.x's first
    // level, padded to 48), 160 (its widest), 64 causal (CLIP's text encoder).
    for (AttnCase c : {AttnCase{2, 37, 53, 3, 24, false, DType::F16, 0}, AttnCase{1, 5, 130, 2, 16, false, DType::F16, 0},
                       AttnCase{3, 21, 67, 5, 40, false, DType::F16, 0}, AttnCase{1, 19, 41, 1, 160, false, DType::F16, 0},
                       AttnCase{1, 77, 77, 2, 64, true, DType::F16, 0}}) {
      CAPTURE(c.lq);
      CAPTURE(c.lk);
      CAPTURE(c.d);
      CAPTURE(c.causal);
      CHECK(check_attention(c) < test::tol_for(DType::F16));
      CHECK(attention_kernel == "attention_coop_emulated");
    }
    // The VAE's 512-wide head and fp32 operands stay on attention.comp.
    CHECK(check_attention({1, 19, 41, 1, 512, false, DType::F16, 0}) < test::tol_for(DType::F16));
    CHECK(attention_kernel == "attention");
    CHECK(check_attention({1, 19, 41, 2, 40, false, DType::F32, 0}) < test::tol_for(DType::F32));
    CHECK(attention_kernel == "attention");
  });
  for (auto [subgroups, blocks] : {std::pair{2u, 2u}, std::pair{8u, 1u}}) {
    CAPTURE(subgroups);
    test::with_emulated_matrix_unit([] {
      CHECK(check_attention({2, 45, 45, 2, 24, true, DType::F16, 0}) < test::tol_for(DType::F16));
      CHECK(attention_kernel == "attention_coop_emulated");
    }, subgroups, blocks);
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

TEST_CASE("attention: SD 1.5 deeper levels: 1024 tokens x 80 and 256 tokens x 160, self and cross (sampled rows)") {
  CHECK(check_attention({1, 1024, 1024, 8, 80, false, DType::F32, 64}) < 1e-5);
  // 256x256 images: 1024 tokens x 40; 1000 queries (250 tiles per head, padded to the subgroup)
  CHECK(check_attention({1, 1024, 1024, 8, 40, false, DType::F32, 64}) < 1e-5);
  CHECK(check_attention({2, 1000, 1000, 8, 40, false, DType::F16, 64}) < 2e-3);
  CHECK(check_attention({2, 1024, 77, 8, 80, false, DType::F16, 64}) < 2e-3);
  CHECK(check_attention({1, 256, 256, 8, 160, false, DType::F32, 64}) < 1e-5);
  CHECK(check_attention({2, 256, 77, 8, 160, false, DType::F32, 64}) < 1e-5);
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

// ---- group norm / layer norm -----------------------------------------------------------------

namespace {

// GroupNorm in double: mean, then the mean squared deviation (biased, as PyTorch).
std::vector<double> group_norm_ref(const std::vector<float>& x, const std::vector<float>& gamma,
                                   const std::vector<float>& beta, int64_t n, int64_t c, int64_t s, int groups,
                                   double eps, bool silu) {
  std::vector<double> y(x.size());
  const int64_t cg = c / groups, len = cg * s;
  for (int64_t ng = 0; ng < n * groups; ++ng) {
    const float* xs = &x[(size_t)(ng * len)];
    double mean = 0, var = 0;
    for (int64_t i = 0; i < len; ++i) mean += xs[i];
    mean /= (double)len;
    for (int64_t i = 0; i < len; ++i) var += (xs[i] - mean) * (xs[i] - mean);
    double rstd = 1.0 / std::sqrt(var / (double)len + eps);
    for (int64_t i = 0; i < len; ++i) {
      int64_t ch = (ng % groups) * cg + i / s;
      double v = (xs[i] - mean) * rstd * gamma[(size_t)ch] + beta[(size_t)ch];
      if (silu) v = v / (1 + std::exp(-v));
      y[(size_t)(ng * len + i)] = v;
    }
  }
  return y;
}

double check_group_norm(int64_t n, int64_t c, int64_t h, int64_t w, int groups, float eps, bool silu, DType dt,
                        float offset = 0.f, double* ms = nullptr, bool reuse_input = false, bool two_part = false) {
  auto& ctx = test::ctx();
  const int64_t s = h * w;
  auto xv = test::randn((size_t)(n * c * s), 500 + c, 1.5f);
  for (auto& v : xv) v += offset;  // a large common offset exposes E[x²] − E[x]² cancellation
  xv = test::round_to(dt, std::move(xv));
  auto gv = test::round_to(dt, test::randu((size_t)c, 501, 0.5f, 1.5f));
  auto bv = test::round_to(dt, test::randn((size_t)c, 502, 0.3f));
  Graph g(ctx);
  Tensor x = g.input({n, c, h, w}, dt), gm = g.input({c}, dt), bt = g.input({c}, dt);
  // two_part: statistics, then apply (ops/group_norm_parts.cpp), as the tiled VAE uses them
  Tensor y = two_part ? ops::group_norm_apply(x, gm, bt, ops::group_norm_stats(x, groups, eps), groups, silu, reuse_input)
                      : ops::group_norm(x, gm, bt, groups, eps, silu, reuse_input);
  g.keep(y);
  g.compile(ms != nullptr);
  if (reuse_input) {  // the result is x's own bytes
    CHECK(g.device_tensor(y).buffer == g.device_tensor(x).buffer);
    CHECK(g.device_tensor(y).offset == g.device_tensor(x).offset);
  }
  g.upload(x, xv);
  g.upload(gm, gv);
  g.upload(bt, bv);
  g.run();
  if (ms) {
    g.run();
    *ms = 0;
    for (auto& t : g.timings()) {
      *ms += t.ms;
      MESSAGE("  " << t.label << ": " << t.ms << " ms");
    }
  }
  return test::rel_l2(g.download(y), group_norm_ref(xv, gv, bv, n, c, s, groups, eps, silu));
}

double check_layer_norm(int64_t rows, int64_t c, DType dt, float offset = 0.f) {
  auto& ctx = test::ctx();
  auto xv = test::randn((size_t)(rows * c), 600 + c);
  for (auto& v : xv) v += offset;
  xv = test::round_to(dt, std::move(xv));
  auto gv = test::round_to(dt, test::randu((size_t)c, 601, 0.5f, 1.5f));
  auto bv = test::round_to(dt, test::randn((size_t)c, 602, 0.3f));
  Graph g(ctx);
  Tensor x = g.input({1, rows, c}, dt), gm = g.input({c}, dt), bt = g.input({c}, dt);
  Tensor y = ops::layer_norm(x, gm, bt, 1e-5f);
  g.keep(y);
  g.compile();
  g.upload(x, xv);
  g.upload(gm, gv);
  g.upload(bt, bv);
  g.run();
  std::vector<double> ref(xv.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xs = &xv[(size_t)(r * c)];
    double mean = 0, var = 0;
    for (int64_t i = 0; i < c; ++i) mean += xs[i];
    mean /= (double)c;
    for (int64_t i = 0; i < c; ++i) var += (xs[i] - mean) * (xs[i] - mean);
    double rstd = 1.0 / std::sqrt(var / (double)c + 1e-5);
    for (int64_t i = 0; i < c; ++i) ref[(size_t)(r * c + i)] = (xs[i] - mean) * rstd * gv[(size_t)i] + bv[(size_t)i];
  }
  return test::rel_l2(g.download(y), ref);
}

}  // namespace

// Tolerances: f32 1e-5 relative L2, f16 2e-3 (output rounding).
TEST_CASE("group_norm: odd shapes (C 96 in 32 groups over 7x9, batch 2), SiLU fused or not") {
  for (DType dt : {DType::F32, DType::F16}) {
    CAPTURE(dtype_name(dt));
    CHECK(check_group_norm(2, 96, 7, 9, 32, 1e-5f, false, dt) < test::tol_for(dt));
    CHECK(check_group_norm(2, 96, 7, 9, 32, 1e-6f, true, dt) < test::tol_for(dt));
    CHECK(check_group_norm(1, 64, 5, 4, 32, 1e-5f, true, dt) < test::tol_for(dt));  // vec4 path, tiny groups
  }
  // A mean of 100 over a spread of 1.5: needs the two-pass statistics.
  CHECK(check_group_norm(1, 64, 33, 35, 32, 1e-5f, false, DType::F32, 100.f) < 1e-5);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("group_norm in place (reuse_input): the one-dispatch and the three-pass forms overwrite x with the result") {
  for (DType dt : {DType::F32, DType::F16}) {
    CAPTURE(dtype_name(dt));
    CHECK(check_group_norm(2, 96, 7, 9, 32, 1e-5f, true, dt, 0.f, nullptr, true) < test::tol_for(dt));     // one dispatch
    CHECK(check_group_norm(1, 128, 64, 64, 32, 1e-6f, true, dt, 2.f, nullptr, true) < test::tol_for(dt));  // three passes
  }
  // The two-part form (statistics, then apply over x's own bytes), as the tiled VAE uses it.
  CHECK(check_group_norm(1, 64, 24, 20, 32, 1e-5f, true, DType::F32, 0.f, nullptr, true, /*two_part=*/true) < 1e-5);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("group_norm: UNet 2560 channels x 8x8 and 320 x 64x64 (f16), eps 1e-5") {
  CHECK(check_group_norm(2, 2560, 8, 8, 32, 1e-5f, true, DType::F32) < 1e-5);
  CHECK(check_group_norm(1, 320, 64, 64, 32, 1e-5f, true, DType::F16) < 2e-3);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("group_norm: VAE 128 channels x 512x512 f32 (exactly 128 MiB) and x 520x512 (> 128 MiB), eps 1e-6") {
  const uint64_t range = test::ctx().info().max_storage_buffer_range;
  REQUIRE((uint64_t)128 * 520 * 512 * 4 > range);
  double ms = 0;
  // A common offset of 3 over a spread of 1.5 across 1 M elements per group.
  CHECK(check_group_norm(1, 128, 512, 512, 32, 1e-6f, true, DType::F32, 3.f, &ms) < 1e-5);
  MESSAGE("group_norm+SiLU 128x512x512 f32: " << ms << " ms (" << 128.0 * 512 * 512 * 12 / (ms * 1e6)
                                              << " GB/s for 2 reads + 1 write)");
  CHECK(check_group_norm(1, 128, 520, 512, 32, 1e-6f, false, DType::F32, -2.f) < 1e-5);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("layer_norm: odd widths and SD widths (4096 x 320, CLIP 77 x 768, 1280)") {
  CHECK(check_layer_norm(7, 37, DType::F32) < 1e-5);
  CHECK(check_layer_norm(5, 1000, DType::F32, 50.f) < 1e-5);
  CHECK(check_layer_norm(4096, 320, DType::F32) < 1e-5);
  CHECK(check_layer_norm(4096, 320, DType::F16) < 2e-3);
  CHECK(check_layer_norm(77, 768, DType::F32) < 1e-5);
  CHECK(check_layer_norm(256, 1280, DType::F32) < 1e-5);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("norms: bad shapes are errors") {
  Graph g(test::ctx());
  Tensor x = g.input({1, 96, 4, 4}, DType::F32), c96 = g.input({96}, DType::F32), c64 = g.input({64}, DType::F32);
  CHECK_THROWS_AS(ops::group_norm(x, c96, c96, 40, 1e-5f, false), Error);  // 96 % 40
  CHECK_THROWS_AS(ops::group_norm(x, c64, c64, 32, 1e-5f, false), Error);  // gamma size
  CHECK_THROWS_AS(ops::layer_norm(x, c96, c96, 1e-5f), Error);             // last dim is 4
}

// ---- GEGLU -----------------------------------------------------------------------------------

TEST_CASE("gelu in common.glsl is the exact-erf GELU (vs std::erf in double)") {
  // Through the eltwise GELU: x over [-8, 8] densely, absolute error per element.
  auto& ctx = test::ctx();
  const size_t n = 16001;
  std::vector<float> xv(n);
  for (size_t i = 0; i < n; ++i) xv[i] = -8.f + 16.f * (float)i / (float)(n - 1);
  Graph g(ctx);
  Tensor x = g.input({(int64_t)n}, DType::F32);
  Tensor y = ops::gelu(x);
  g.keep(y);
  g.compile();
  g.upload(x, xv);
  g.run();
  auto yv = g.download(y);
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    double r = 0.5 * xv[i] * (1 + std::erf(xv[i] / std::sqrt(2.0)));
    worst = std::max(worst, std::fabs(yv[i] - r) / std::max(1.0, std::fabs(r)));
  }
  MESSAGE("gelu: worst error " << worst << " (absolute, relative beyond |y| > 1)");
  CHECK(worst < 1e-6);
  CHECK(ctx.validation_messages() == 0);
}

TEST_CASE("geglu: odd width and SD's 4096 x 2*1280 (f32, f16)") {
  auto& ctx = test::ctx();
  for (auto [rows, d] : std::vector<std::pair<int64_t, int64_t>>{{7, 13}, {4096, 1280}}) {
    for (DType dt : {DType::F32, DType::F16}) {
      CAPTURE(rows);
      CAPTURE(d);
      CAPTURE(dtype_name(dt));
      auto xv = test::round_to(dt, test::randn((size_t)(rows * 2 * d), 700 + d, 2.f));
      Graph g(ctx);
      Tensor x = g.input({1, rows, 2 * d}, dt);
      Tensor y = ops::geglu(x);
      g.keep(y);
      g.compile();
      g.upload(x, xv);
      g.run();
      CHECK(y.shape() == Shape{1, rows, d});
      std::vector<double> ref((size_t)(rows * d));
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < d; ++j) {
          double a = xv[(size_t)(r * 2 * d + j)], gt = xv[(size_t)(r * 2 * d + d + j)];
          ref[(size_t)(r * d + j)] = a * 0.5 * gt * (1 + std::erf(gt / std::sqrt(2.0)));
        }
      CHECK(test::rel_l2(g.download(y), ref) < test::tol_for(dt));
    }
  }
  CHECK(ctx.validation_messages() == 0);
}
