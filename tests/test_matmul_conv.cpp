// linear, batched matmul and conv2d (matmul.comp, conv2d.comp) against a CPU reference in
// double, computed from the same (fp16-rounded where the dtype is F16) inputs the device sees.
// Small odd shapes are checked at every output; real Stable Diffusion 1.5 shapes are checked
// on a sample of outputs (stated per test: thousands of random outputs plus whole border rows,
// each recomputed exactly in double), because a full double reference of a 7-GFLOP conv would
// take longer than the kernel under test. Tolerances: rel L2 <= 1e-5 (f32), <= 2e-3 (f16).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "runtime/gpu/context.h"
#include "runtime/gpu/device_profile.h"
#include "runtime/error.h"
#include "runtime/gpu/graph.h"
#include "runtime/ops.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

// ---- references ----------------------------------------------------------------------------

struct LinearCase {
  int64_t M, K, N;
  bool bias, residual;
};

// y[m, n] = sum_k x[m, k] w[n, k] + b[n] + r[m, n]
double ref_linear_at(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                     const std::vector<float>& r, int64_t K, int64_t N, int64_t m, int64_t n) {
  double s = 0;
  for (int64_t k = 0; k < K; ++k) s += (double)x[m * K + k] * w[n * K + k];
  if (!b.empty()) s += b[n];
  if (!r.empty()) s += r[m * N + n];
  return s;
}

struct ConvCase {
  int64_t N, Ci, H, W, Co, k;
  ops::Conv2d p;
};
int64_t conv_out(int64_t in, int64_t k, int stride, int pa, int pb) { return (in + pa + pb - k) / stride + 1; }

double ref_conv_at(const ConvCase& c, const std::vector<float>& x, const std::vector<float>& w,
                   const std::vector<float>& b, const std::vector<float>& r, int64_t Ho, int64_t Wo, int64_t idx) {
  int64_t ow = idx % Wo, oh = idx / Wo % Ho, co = idx / (Wo * Ho) % c.Co, n = idx / (Wo * Ho * c.Co);
  double s = b.empty() ? 0.0 : b[co];
  for (int64_t ci = 0; ci < c.Ci; ++ci)
    for (int64_t dy = 0; dy < c.k; ++dy) {
      int64_t ih = oh * c.p.stride - c.p.pad_top + dy;
      if (ih < 0 || ih >= c.H) continue;
      for (int64_t dx = 0; dx < c.k; ++dx) {
        int64_t iw = ow * c.p.stride - c.p.pad_left + dx;
        if (iw < 0 || iw >= c.W) continue;
        s += (double)w[((co * c.Ci + ci) * c.k + dy) * c.k + dx] * x[((n * c.Ci + ci) * c.H + ih) * c.W + iw];
      }
    }
  if (!r.empty()) s += r[idx];
  return s;
}

// Output indices to check: all of them when `full`, else `samples` random ones plus every
// output of the first and last output channel of image 0 (all borders, so padding is covered).
std::vector<int64_t> pick(int64_t total, bool full, int64_t samples, int64_t plane, int64_t planes, uint64_t seed) {
  std::vector<int64_t> idx;
  if (full) {
    idx.resize((size_t)total);
    for (int64_t i = 0; i < total; ++i) idx[(size_t)i] = i;
    return idx;
  }
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < samples; ++i) idx.push_back((int64_t)(rng() % (uint64_t)total));
  for (int64_t i = 0; i < plane; ++i) {
    idx.push_back(i);
    idx.push_back((planes - 1) * plane + i);
  }
  return idx;
}

double rel_l2_at(const std::vector<float>& got, const std::vector<int64_t>& idx, const std::vector<double>& ref) {
  std::vector<float> g(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) g[i] = got[(size_t)idx[i]];
  return test::rel_l2(g, ref);
}

// ---- runners -------------------------------------------------------------------------------

// The kernel of the last runner's last dispatch (which variant the op chose).
std::string last_kernel;

// Runs linear (optionally with bias/residual) and returns rel L2 against the reference over
// all outputs (full) or a sample.
double run_linear(DType dt, const LinearCase& lc, bool full, uint64_t seed) {
  auto& c = test::ctx();
  Graph g(c);
  Tensor x = g.input({lc.M, lc.K}, dt), w = g.input({lc.N, lc.K}, dt);
  Tensor b = lc.bias ? g.input({lc.N}, dt) : Tensor{};
  Tensor r = lc.residual ? g.input({lc.M, lc.N}, dt) : Tensor{};
  Tensor y = lc.residual ? ops::linear(x, w, b, r) : ops::linear(x, w, b);
  last_kernel = g.dispatches().back().kernel;
  g.keep(y);
  g.compile();
  auto xv = test::round_to(dt, test::randn((size_t)(lc.M * lc.K), seed));
  auto wv = test::round_to(dt, test::randn((size_t)(lc.N * lc.K), seed + 1, 1.f / std::sqrt((float)lc.K)));
  std::vector<float> bv, rv;
  g.upload(x, xv);
  g.upload(w, wv);
  if (lc.bias) g.upload(b, bv = test::round_to(dt, test::randn((size_t)lc.N, seed + 2)));
  if (lc.residual) g.upload(r, rv = test::round_to(dt, test::randn((size_t)(lc.M * lc.N), seed + 3)));
  g.run();
  auto yv = g.download(y);
  REQUIRE(yv.size() == (size_t)(lc.M * lc.N));
  auto idx = pick(lc.M * lc.N, full, 4000, lc.N, lc.M, seed);
  std::vector<double> ref(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) ref[i] = ref_linear_at(xv, wv, bv, rv, lc.K, lc.N, idx[i] / lc.N, idx[i] % lc.N);
  CHECK(c.validation_messages() == 0);
  return rel_l2_at(yv, idx, ref);
}

double run_conv(DType dt, const ConvCase& cc, bool bias, bool residual, bool full, uint64_t seed) {
  auto& c = test::ctx();
  int64_t Ho = conv_out(cc.H, cc.k, cc.p.stride, cc.p.pad_top, cc.p.pad_bottom);
  int64_t Wo = conv_out(cc.W, cc.k, cc.p.stride, cc.p.pad_left, cc.p.pad_right);
  Graph g(c);
  Tensor x = g.input({cc.N, cc.Ci, cc.H, cc.W}, dt), w = g.input({cc.Co, cc.Ci, cc.k, cc.k}, dt);
  Tensor b = bias ? g.input({cc.Co}, dt) : Tensor{};
  Tensor r = residual ? g.input({cc.N, cc.Co, Ho, Wo}, dt) : Tensor{};
  Tensor y = residual ? ops::conv2d(x, w, b, cc.p, r) : ops::conv2d(x, w, b, cc.p);
  REQUIRE(y.shape() == Shape{cc.N, cc.Co, Ho, Wo});
  last_kernel = g.dispatches().back().kernel;
  g.keep(y);
  g.compile();
  auto xv = test::round_to(dt, test::randn((size_t)x.numel(), seed));
  auto wv = test::round_to(dt, test::randn((size_t)w.numel(), seed + 1, 1.f / std::sqrt((float)(cc.Ci * cc.k * cc.k))));
  std::vector<float> bv, rv;
  g.upload(x, xv);
  g.upload(w, wv);
  if (bias) g.upload(b, bv = test::round_to(dt, test::randn((size_t)cc.Co, seed + 2)));
  if (residual) g.upload(r, rv = test::round_to(dt, test::randn((size_t)y.numel(), seed + 3)));
  g.run();
  auto yv = g.download(y);
  auto idx = pick(y.numel(), full, 4000, Ho * Wo, cc.Co, seed);
  std::vector<double> ref(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) ref[i] = ref_conv_at(cc, xv, wv, bv, rv, Ho, Wo, idx[i]);
  CHECK(c.validation_messages() == 0);
  return rel_l2_at(yv, idx, ref);
}

// a [B, M, K] · b [Bb, K, N] (or bᵀ, b [Bb, N, K]) in double; Bb = 1 broadcasts b.
std::vector<double> batched_matmul_ref(const std::vector<float>& av, const std::vector<float>& bv, int64_t B, int64_t Bb,
                                       int64_t M, int64_t N, int64_t K, bool trans_b) {
  std::vector<double> ref((size_t)(B * M * N));
  for (int64_t bb = 0; bb < B; ++bb) {
    const int64_t sb = Bb == 1 ? 0 : bb;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += (double)av[(size_t)((bb * M + m) * K + k)] *
               bv[(size_t)(trans_b ? (sb * N + n) * K + k : (sb * K + k) * N + n)];
        ref[(size_t)((bb * M + m) * N + n)] = s;
      }
  }
  return ref;
}

// A convolution of the odd-shape lists below, with or without bias and residual.
struct ConvVariant {
  ConvCase cc;
  bool bias, resid;
};

// Every output of one variant against the double reference; `kernel`: the one it must take.
void check_conv(DType dt, const ConvVariant& v, uint64_t seed, const char* kernel = nullptr) {
  CAPTURE(dtype_name(dt));
  CAPTURE(v.cc.Ci);
  CAPTURE(v.cc.Co);
  CAPTURE(v.cc.k);
  CAPTURE(v.cc.p.stride);
  CAPTURE(v.cc.p.pad_top);
  CAPTURE(v.resid);
  CHECK(run_conv(dt, v.cc, v.bias, v.resid, true, seed) < test::tol_for(dt));
  if (kernel) CHECK(last_kernel == kernel);
}

}  // namespace

// ---- small odd shapes: every output checked ------------------------------------------------

// These shapes are all below the compact thresholds (DeviceProfile::compact_*_below_flops): run
// `body` once with the tuned variants forced (thresholds 0), once as the device profile has it.
template <class F>
void tuned_and_compact(F body) {
  Context& ctx = test::ctx();
  const DeviceProfile chosen = ctx.profile();
  REQUIRE(chosen.compact_conv_below_flops >= 1e6);  // far above any case here (< 1 MFLOP)
  REQUIRE(chosen.compact_matmul_below_flops >= 1e6);
  DeviceProfile tuned = chosen;
  tuned.compact_conv_below_flops = tuned.compact_matmul_below_flops = 0;
  for (const DeviceProfile& prof : {tuned, chosen}) {
    ctx.set_profile(prof);
    CAPTURE(prof.compact_conv_below_flops);
    body();
  }
  ctx.set_profile(chosen);
}

TEST_CASE("linear: odd shapes, bias and residual, scalar and vec4 paths (f32, f16), tuned and compact") {
  tuned_and_compact([] {
  for (DType dt : {DType::F32, DType::F16}) {
    double tol = test::tol_for(dt);
    // K=19: scalar path; K=20 with odd M and N: vec4 loads, clamped edges.
    for (LinearCase lc : {LinearCase{37, 19, 23, true, false}, LinearCase{37, 20, 23, true, true},
                          LinearCase{1, 3, 1, false, false}, LinearCase{70, 64, 130, false, true}}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(lc.M);
      CAPTURE(lc.K);
      CAPTURE(lc.N);
      CHECK(run_linear(dt, lc, true, 100 + lc.K) < tol);
    }
  }
  });
}

TEST_CASE("linear: leading dimensions are kept, [B, L, K] -> [B, L, N]") {
  auto& c = test::ctx();
  Graph g(c);
  Tensor x = g.input({2, 5, 12}, DType::F32), w = g.input({7, 12}, DType::F32);
  Tensor y = ops::linear(x, w);
  CHECK(y.shape() == Shape{2, 5, 7});
}

TEST_CASE("matmul: batched, with and without trans_b, odd shapes (f32, f16), tuned and compact") {
  auto& c = test::ctx();
  tuned_and_compact([&] {
  for (DType dt : {DType::F32, DType::F16})
    for (bool trans_b : {true, false})
      for (auto [B, M, K, N] : {std::array<int64_t, 4>{3, 37, 19, 23}, std::array<int64_t, 4>{2, 33, 40, 28},
                                std::array<int64_t, 4>{2, 9, 77, 40}}) {
        CAPTURE(dtype_name(dt));
        CAPTURE(trans_b);
        CAPTURE(M);
        CAPTURE(K);
        CAPTURE(N);
        Graph g(c);
        Tensor a = g.input({B, M, K}, dt);
        Tensor b = g.input(trans_b ? Shape{B, N, K} : Shape{B, K, N}, dt);
        Tensor y = ops::matmul(a, b, trans_b);
        REQUIRE(y.shape() == Shape{B, M, N});
        g.keep(y);
        g.compile();
        auto av = test::round_to(dt, test::randn((size_t)a.numel(), 7));
        auto bv = test::round_to(dt, test::randn((size_t)b.numel(), 8));
        g.upload(a, av);
        g.upload(b, bv);
        g.run();
        auto yv = g.download(y);
        CHECK(test::rel_l2(yv, batched_matmul_ref(av, bv, B, B, M, N, K, trans_b)) < test::tol_for(dt));
      }
  });
  CHECK(c.validation_messages() == 0);
}

TEST_CASE("conv2d: odd shapes, every SD variant, bias and residual (f32, f16), tuned and compact") {
  const ops::Conv2d same3 = ops::Conv2d::same(3), down = ops::Conv2d::down(), asym = ops::Conv2d::down_asym();
  const ops::Conv2d one = ops::Conv2d::same(1);
  tuned_and_compact([&] {
  for (DType dt : {DType::F32, DType::F16}) {
    using V = ConvVariant;
    for (const V& v : {V{{2, 3, 7, 9, 5, 3, same3}, true, false}, V{{2, 3, 7, 9, 5, 3, same3}, true, true},
                V{{2, 3, 7, 9, 5, 3, down}, true, false}, V{{1, 3, 7, 9, 5, 3, asym}, false, false},
                V{{1, 4, 8, 8, 11, 3, asym}, true, true}, V{{2, 3, 7, 9, 5, 1, one}, true, true},
                V{{2, 8, 6, 6, 9, 1, one}, true, false}, V{{1, 17, 5, 3, 19, 3, same3}, false, false},
                // Ci % 4 == 0 and W % 4 == 0: the vec4 weight and row fetches, partial tiles
                V{{2, 8, 5, 12, 7, 3, same3}, true, true}, V{{1, 12, 9, 20, 6, 3, down}, true, false},
                V{{1, 4, 7, 12, 3, 3, asym}, false, true},
                // fewer pixel blocks than a subgroup: multi-row blocks (RB), partial row groups
                V{{1, 8, 5, 4, 7, 3, same3}, true, true}, V{{1, 3, 3, 2, 5, 3, same3}, true, false},
                V{{1, 12, 6, 4, 21, 3, down}, false, true}}) {
      check_conv(dt, v, 200 + v.cc.Ci);
    }
  }
  });
}

// ---- the matrix-unit kernel ----------------------------------------------------------------

// The matrix-unit kernel, matmul_coop.comp, in its emulated build (test::with_emulated_matrix_unit):
// the staging of A and B tiles, the im2col gather, the zero-filled edges, the K steps, the
// blocks per subgroup and the epilogue are the GPU build's, checked against the same double
// references. Only fp16 operands take the matrix unit.
TEST_CASE("matrix unit (emulated build): linear and conv2d on fp16 match the double reference, every output") {
  test::with_emulated_matrix_unit([] {
    const double tol = test::tol_for(DType::F16);
    // K = 100: seven K steps of 16 with a partial last one; M, N not multiples of the 32x32 block.
    for (LinearCase lc : {LinearCase{37, 19, 23, true, false}, LinearCase{37, 20, 23, true, true},
                          LinearCase{1, 3, 1, false, false}, LinearCase{70, 64, 130, false, true},
                          LinearCase{33, 100, 65, true, true}}) {
      CAPTURE(lc.M);
      CAPTURE(lc.K);
      CAPTURE(lc.N);
      CHECK(run_linear(DType::F16, lc, true, 300 + lc.K) < tol);
      CHECK(last_kernel == "matmul_coop_emulated");
    }
    CHECK(run_linear(DType::F32, LinearCase{37, 20, 23, true, true}, true, 1) < test::tol_for(DType::F32));
    CHECK(last_kernel == "matmul");  // fp32 operands stay on the scalar kernel

    const ops::Conv2d same3 = ops::Conv2d::same(3), down = ops::Conv2d::down(), asym = ops::Conv2d::down_asym();
    const ops::Conv2d one = ops::Conv2d::same(1);
    using V = ConvVariant;
    for (const V& v : {V{{2, 3, 7, 9, 5, 3, same3}, true, true}, V{{2, 3, 7, 9, 5, 3, down}, true, false},
                V{{1, 3, 7, 9, 5, 3, asym}, false, false}, V{{1, 4, 8, 8, 11, 3, asym}, true, true},
                V{{2, 3, 7, 9, 5, 1, one}, true, true}, V{{1, 17, 5, 3, 19, 3, same3}, false, false},
                V{{2, 40, 9, 11, 37, 3, same3}, true, true},
                // unequal paddings: rows and columns gathered from their own offsets
                V{{1, 5, 6, 7, 9, 3, ops::Conv2d{1, 2, 0, 1, 0}}, true, false}}) {
      check_conv(DType::F16, v, 400 + v.cc.Ci, "matmul_coop_emulated");
    }
  });
}

TEST_CASE("matrix unit (emulated build): two blocks per subgroup, and subgroups without a block") {
  for (auto [subgroups, blocks] : {std::pair{2u, 2u}, std::pair{8u, 1u}}) {
    CAPTURE(subgroups);
    test::with_emulated_matrix_unit([] {
      CHECK(run_linear(DType::F16, LinearCase{70, 40, 75, true, true}, true, 5) < test::tol_for(DType::F16));
      CHECK(last_kernel == "matmul_coop_emulated");
      CHECK(run_conv(DType::F16, ConvCase{2, 6, 9, 10, 35, 3, ops::Conv2d::same(3)}, true, true, true, 6) <
            test::tol_for(DType::F16));
      CHECK(last_kernel == "matmul_coop_emulated");
    }, subgroups, blocks);
  }
}

TEST_CASE("matrix unit (emulated build): batched matmul, with and without trans_b, broadcast B") {
  auto& c = test::ctx();
  test::with_emulated_matrix_unit([&] {
    for (bool trans_b : {true, false})
      for (auto [B, Bb, M, K, N] : {std::array<int64_t, 5>{3, 3, 37, 19, 23}, std::array<int64_t, 5>{2, 1, 33, 40, 28},
                                    std::array<int64_t, 5>{2, 2, 9, 77, 40}}) {
        CAPTURE(trans_b);
        CAPTURE(M);
        CAPTURE(K);
        CAPTURE(N);
        Graph g(c);
        Tensor a = g.input({B, M, K}, DType::F16);
        Tensor b = g.input(trans_b ? Shape{Bb, N, K} : Shape{Bb, K, N}, DType::F16);
        Tensor y = ops::matmul(a, b, trans_b);
        CHECK(g.dispatches().back().kernel == "matmul_coop_emulated");
        g.keep(y);
        g.compile();
        auto av = test::round_to(DType::F16, test::randn((size_t)a.numel(), 17));
        auto bv = test::round_to(DType::F16, test::randn((size_t)b.numel(), 18));
        g.upload(a, av);
        g.upload(b, bv);
        g.run();
        auto yv = g.download(y);
        CHECK(test::rel_l2(yv, batched_matmul_ref(av, bv, B, Bb, M, N, K, trans_b)) < test::tol_for(DType::F16));
      }
  });
  CHECK(c.validation_messages() == 0);
}

TEST_CASE("conv2d and linear: bad shapes are errors that name the problem") {
  auto& c = test::ctx();
  Graph g(c);
  Tensor x = g.input({1, 4, 8, 8}, DType::F32);
  Tensor w = g.input({8, 5, 3, 3}, DType::F32);
  CHECK_THROWS_WITH_AS(ops::conv2d(x, w, {}, ops::Conv2d::same(3)), doctest::Contains("channels"), Error);
  Tensor w2 = g.input({8, 4, 3, 3}, DType::F32), b2 = g.input({7}, DType::F32);
  CHECK_THROWS_WITH_AS(ops::conv2d(x, w2, b2, ops::Conv2d::same(3)), doctest::Contains("bias"), Error);
  Tensor lx = g.input({3, 10}, DType::F32), lw = g.input({6, 11}, DType::F32);
  CHECK_THROWS_WITH_AS(ops::linear(lx, lw), doctest::Contains("features"), Error);
  Tensor ma = g.input({2, 3, 4}, DType::F32), mb = g.input({2, 5, 6}, DType::F32);
  CHECK_THROWS_WITH_AS(ops::matmul(ma, mb, false), doctest::Contains("inner dimensions"), Error);
}

// ---- the loop limiter: reductions longer than 65,535 steps ---------------------------------

TEST_CASE("loop budget: linear with K = 100,000 and conv with 20,000 input channels are exact") {
  // A scalar loop over K, or un-unrolled kernel-window loops (20,000 x (1 + 3) iterations or more),
  // would exceed lavapipe's 65,535-iteration budget and silently drop the tail.
  CHECK(run_linear(DType::F32, {8, 100000, 8, true, false}, true, 300) < 1e-5);
  CHECK(run_linear(DType::F32, {5, 99999, 6, false, false}, true, 301) < 1e-5);  // scalar path
  CHECK(run_conv(DType::F32, {1, 20000, 4, 4, 8, 3, ops::Conv2d::same(3)}, true, false, true, 302) < 1e-5);
}

// ---- real SD 1.5 shapes (sampled references, see top of file) -----------------------------

TEST_CASE("conv2d: SD 1.5 sizes, sampled reference (f32, and f16 for 320->320)") {
  const ops::Conv2d same3 = ops::Conv2d::same(3);
  struct R {
    const char* what;
    ConvCase cc;
    DType dt;
  };
  for (R r : {R{"UNet 320->320 3x3 @64x64", {1, 320, 64, 64, 320, 3, same3}, DType::F32},
              R{"UNet 320->320 3x3 @64x64 f16", {1, 320, 64, 64, 320, 3, same3}, DType::F16},
              R{"UNet 2560->1280 3x3 @8x8 (K = 23,040)", {1, 2560, 8, 8, 1280, 3, same3}, DType::F32},
              R{"UNet 2560->1280 3x3 @4x4 (256x256 images; multi-row blocks)", {1, 2560, 4, 4, 1280, 3, same3}, DType::F32},
              R{"UNet 1280->1280 3x3 @4x4 f16", {1, 1280, 4, 4, 1280, 3, same3}, DType::F16},
              R{"UNet 1280->1280 3x3 @4x4 batch 2", {2, 1280, 4, 4, 1280, 3, same3}, DType::F32},
              R{"UNet conv_in 4->320 @64x64", {2, 4, 64, 64, 320, 3, same3}, DType::F32},
              R{"UNet Downsample 640 @32x32", {1, 640, 32, 32, 640, 3, ops::Conv2d::down()}, DType::F32},
              R{"VAE encoder Downsample 128ch 256x256 -> 128x128", {1, 128, 256, 256, 128, 3, ops::Conv2d::down_asym()}, DType::F32},
              R{"VAE 1x1 512->512 @64x64", {1, 512, 64, 64, 512, 1, ops::Conv2d::same(1)}, DType::F32},
              R{"UNet 1x1 2560->1280 @8x8 f16", {1, 2560, 8, 8, 1280, 1, ops::Conv2d::same(1)}, DType::F16}}) {
    CAPTURE(r.what);
    CHECK(run_conv(r.dt, r.cc, true, true, false, 400) < test::tol_for(r.dt));
  }
}

TEST_CASE("linear: SD 1.5 sizes, sampled reference (GEGLU proj, K = 1280 and 5120)") {
  struct R {
    const char* what;
    LinearCase lc;
    DType dt;
  };
  for (R r : {R{"GEGLU proj [2*4096, 320] -> 2560", {2 * 4096, 320, 2560, true, false}, DType::F32},
              R{"GEGLU proj f16", {2 * 4096, 320, 2560, true, false}, DType::F16},
              R{"attn out [2*256, 1280] -> 1280 + residual", {2 * 256, 1280, 1280, true, true}, DType::F32},
              R{"FF out [2*256, 5120] -> 1280", {2 * 256, 5120, 1280, true, false}, DType::F32},
              R{"FF out f16", {2 * 256, 5120, 1280, true, true}, DType::F16},
              R{"CLIP MLP [77, 768] -> 3072", {77, 768, 3072, true, false}, DType::F32}}) {
    CAPTURE(r.what);
    CHECK(run_linear(r.dt, r.lc, false, 500) < test::tol_for(r.dt));
  }
}

TEST_CASE("conv2d: tensors over 128 MiB (maxStorageBufferRange) at the VAE's 512x512 level") {
  // The VAE's 128-channel 512x512 f32 activations are exactly 128 MiB; 130 channels put the
  // conv_in output (3->130) and the conv_out input (130->3) just over the SSBO range limit.
  const auto& info = test::ctx().info();
  REQUIRE((uint64_t)130 * 512 * 512 * 4 > info.max_storage_buffer_range);
  CHECK(run_conv(DType::F32, {1, 3, 512, 512, 130, 3, ops::Conv2d::same(3)}, true, false, false, 600) < 1e-5);
  CHECK(run_conv(DType::F32, {1, 130, 512, 512, 3, 3, ops::Conv2d::same(3)}, true, false, false, 601) < 1e-5);
}
