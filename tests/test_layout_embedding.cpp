// Layout ops (exact: pure data movement) and embeddings (timestep: vs LDM's float32 recipe and
// the reference vector; token: exact table lookup + position, with a 152 MB table).
#include <doctest/doctest.h>

#include <cmath>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/gpu/graph.h"
#include "runtime/ops.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

// Runs `op` on one input of `shape` and returns (input, output) on the host.
template <class Op>
std::pair<std::vector<float>, std::vector<float>> run_unary(const Shape& shape, DType dt, Op op, Shape* out_shape) {
  Graph g(test::ctx());
  auto xv = test::round_to(dt, test::randn((size_t)shape_numel(shape), 900 + shape.size()));
  Tensor x = g.input(shape, dt);
  Tensor y = op(x);
  *out_shape = y.shape();
  g.keep(y);
  g.compile();
  g.upload(x, xv);
  g.run();
  return {xv, g.download(y)};
}

}  // namespace

TEST_CASE("layout: upsample_nearest2x, odd and UNet sizes, f32 and f16 (exact)") {
  for (DType dt : {DType::F32, DType::F16})
    for (Shape s : {Shape{2, 5, 7, 9}, Shape{1, 1280, 16, 16}}) {
      CAPTURE(shape_str(s));
      Shape os;
      auto [x, y] = run_unary(s, dt, [](Tensor t) { return ops::upsample_nearest2x(t); }, &os);
      REQUIRE(os == Shape{s[0], s[1], 2 * s[2], 2 * s[3]});
      size_t bad = 0;
      for (int64_t nc = 0; nc < s[0] * s[1]; ++nc)
        for (int64_t h = 0; h < 2 * s[2]; ++h)
          for (int64_t w = 0; w < 2 * s[3]; ++w)
            bad += y[(size_t)((nc * 2 * s[2] + h) * 2 * s[3] + w)] != x[(size_t)((nc * s[2] + h / 2) * s[3] + w / 2)];
      CHECK(bad == 0);
    }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("layout: concat_channels, odd (scalar) and UNet skip 1280+1280 at 8x8 (vec4), exact") {
  struct Case { int64_t n, ca, cb, h, w; };
  for (DType dt : {DType::F32, DType::F16})
    for (Case c : {Case{2, 3, 4, 5, 7}, Case{2, 1280, 1280, 8, 8}, Case{1, 640, 320, 32, 32}}) {
      CAPTURE(c.ca);
      Graph g(test::ctx());
      const int64_t s = c.h * c.w;
      auto av = test::round_to(dt, test::randn((size_t)(c.n * c.ca * s), 31));
      auto bv = test::round_to(dt, test::randn((size_t)(c.n * c.cb * s), 32));
      Tensor a = g.input({c.n, c.ca, c.h, c.w}, dt), b = g.input({c.n, c.cb, c.h, c.w}, dt);
      Tensor y = ops::concat_channels(a, b);
      g.keep(y);
      g.compile();
      g.upload(a, av);
      g.upload(b, bv);
      g.run();
      auto yv = g.download(y);
      REQUIRE(y.shape() == Shape{c.n, c.ca + c.cb, c.h, c.w});
      size_t bad = 0;
      for (int64_t n = 0; n < c.n; ++n)
        for (int64_t ch = 0; ch < c.ca + c.cb; ++ch)
          for (int64_t i = 0; i < s; ++i) {
            float want = ch < c.ca ? av[(size_t)((n * c.ca + ch) * s + i)] : bv[(size_t)((n * c.cb + ch - c.ca) * s + i)];
            bad += yv[(size_t)((n * (c.ca + c.cb) + ch) * s + i)] != want;
          }
      CHECK(bad == 0);
    }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("layout: nchw_to_nlc and nlc_to_nchw (odd and 320 x 64x64), round trip, exact") {
  for (DType dt : {DType::F32, DType::F16})
    for (Shape s : {Shape{2, 5, 7, 9}, Shape{1, 320, 64, 64}}) {
      CAPTURE(shape_str(s));
      Graph g(test::ctx());
      const int64_t n = s[0], c = s[1], hw = s[2] * s[3];
      auto xv = test::round_to(dt, test::randn((size_t)shape_numel(s), 41));
      Tensor x = g.input(s, dt);
      Tensor t = ops::nchw_to_nlc(x);
      Tensor back = ops::nlc_to_nchw(t, s[2], s[3]);
      g.keep(t);
      g.keep(back);
      g.compile();
      g.upload(x, xv);
      g.run();
      REQUIRE(t.shape() == Shape{n, hw, c});
      REQUIRE(back.shape() == s);
      auto tv = g.download(t);
      size_t bad = 0;
      for (int64_t b = 0; b < n; ++b)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t i = 0; i < hw; ++i) bad += tv[(size_t)((b * hw + i) * c + ch)] != xv[(size_t)((b * c + ch) * hw + i)];
      CHECK(bad == 0);
      CHECK(g.download(back) == xv);
    }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("layout: slice_batch (scalar and vec4 rows), exact, bad ranges are errors") {
  for (Shape s : {Shape{3, 5, 7}, Shape{4, 4, 64, 64}}) {
    CAPTURE(shape_str(s));
    Shape os;
    auto [x, y] = run_unary(s, DType::F32, [](Tensor t) { return ops::slice_batch(t, 1, 2); }, &os);
    Shape want = s;
    want[0] = 2;
    REQUIRE(os == want);
    const size_t inner = (size_t)(shape_numel(s) / s[0]);
    CHECK(y == std::vector<float>(x.begin() + (long)inner, x.begin() + (long)(3 * inner)));
  }
  Graph g(test::ctx());
  Tensor x = g.input({3, 4}, DType::F32);
  CHECK_THROWS_AS(ops::slice_batch(x, 2, 2), Error);
  CHECK_THROWS_AS(ops::slice_batch(x, -1, 1), Error);
  Tensor a = g.input({1, 2, 3, 3}, DType::F32), b = g.input({1, 2, 3, 4}, DType::F32);
  CHECK_THROWS_AS(ops::concat_channels(a, b), Error);
  CHECK_THROWS_AS(ops::nlc_to_nchw(x.g->input({1, 10, 4}, DType::F32), 3, 3), Error);
  CHECK(test::ctx().validation_messages() == 0);
}

// ---- timestep embedding ----------------------------------------------------------------------

namespace {

// LDM's recipe in float32 with a correctly rounded exp; cos/sin of the f32 argument in double.
std::vector<double> timestep_ref(const std::vector<float>& t, int dim, float max_period, std::vector<double>* bound) {
  const int half = dim / 2;
  const float neg_log = (float)(-std::log((double)max_period));
  std::vector<double> y(t.size() * dim, 0.0);
  bound->assign(y.size(), 0.0);
  for (size_t n = 0; n < t.size(); ++n)
    for (int i = 0; i < half; ++i) {
      float e = (neg_log * (float)i) / (float)half;
      float f = (float)std::exp((double)e);
      float arg = t[n] * f;
      y[n * dim + i] = std::cos((double)arg);
      y[n * dim + half + i] = std::sin((double)arg);
      // exp in float32 (torch's or ours) may be 1 ulp off the correctly rounded value: that moves
      // the argument by up to t · ulp(f) (plus one ulp of the argument, and 1e-6 for sin/cos).
      double ulp_f = std::ldexp(1.0, std::ilogb(f) - 23), ulp_a = std::ldexp(1.0, std::ilogb(std::max(arg, 1e-30f)) - 23);
      (*bound)[n * dim + i] = (*bound)[n * dim + half + i] = t[n] * ulp_f + ulp_a + 1e-6;
    }
  return y;
}

std::vector<float> run_timestep(const std::vector<float>& t, int dim) {
  Graph g(test::ctx());
  Tensor tt = g.input({(int64_t)t.size()}, DType::F32);
  Tensor y = ops::timestep_embedding(tt, dim);
  g.keep(y);
  g.compile();
  g.upload(tt, t);
  g.run();
  REQUIRE(y.shape() == Shape{(int64_t)t.size(), dim});
  return g.download(y);
}

}  // namespace

TEST_CASE("timestep_embedding: LDM float32 recipe for t in [0, 999] incl. fractional, dims 32/320/321") {
  std::vector<float> t = {0.f, 1.f, 500.f, 777.5f, 999.f, 0.25f, 981.f, 123.456f};
  for (int dim : {32, 320, 321}) {
    CAPTURE(dim);
    auto got = run_timestep(t, dim);
    std::vector<double> bound;
    auto ref = timestep_ref(t, dim, 10000.f, &bound);
    size_t over = 0;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      double err = std::fabs(got[i] - ref[i]);
      worst = std::max(worst, err);
      over += err > bound[i];
    }
    MESSAGE("dim " << dim << ": worst |error| " << worst);
    CHECK(over == 0);
    if (dim % 2) for (size_t n = 0; n < t.size(); ++n) CHECK(got[n * dim + dim - 1] == 0.f);  // zero pad column
  }
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("timestep_embedding: matches the reference vector (LDM, t = 500, dim 32)") {
  REQUIRE_SHARED();
  auto npy = test::load_npy(test::vectors_dir() + "/unet_t_emb.npy");
  REQUIRE(npy.shape == std::vector<int64_t>{1, 32});
  auto got = run_timestep({500.f}, 32);
  std::vector<double> bound;
  timestep_ref({500.f}, 32, 10000.f, &bound);
  size_t over = 0;
  for (size_t i = 0; i < got.size(); ++i) over += std::fabs(got[i] - npy.data[i]) > bound[i];
  CHECK(over == 0);
  CHECK(test::rel_l2(got, npy.data) < 1e-5);
  CHECK(test::ctx().validation_messages() == 0);
}

// ---- token embedding -------------------------------------------------------------------------

TEST_CASE("token_embedding: SD 1.5 table 49408 x 768 f32 (152 MB > 128 MiB), 2 x 77 ids, exact") {
  auto& ctx = test::ctx();
  const int64_t vocab = 49408, d = 768, b = 2, l = 77;
  REQUIRE((uint64_t)(vocab * d * 4) > ctx.info().max_storage_buffer_range);
  Graph g(ctx);
  Tensor ids = g.input({b, l}, DType::I32), table = g.input({vocab, d}, DType::F32), pos = g.input({l, d}, DType::F32);
  Tensor y = ops::token_embedding(ids, table, pos);
  g.keep(y);
  g.compile();
  std::vector<float> tv((size_t)(vocab * d));
  for (size_t i = 0; i < tv.size(); ++i) tv[i] = (float)(i % 9973) * 0.001f - (float)(i / 9973) * 1e-6f;
  auto pv = test::randn((size_t)(l * d), 51);
  std::vector<int32_t> iv((size_t)(b * l));
  std::mt19937 rng(5);
  for (auto& id : iv) id = (int32_t)(rng() % vocab);
  iv[0] = 49406;  // BOS
  iv[1] = 0;
  iv.back() = 49407;  // EOS / pad: the table's last row, beyond the first 128 MiB
  g.upload_i32(ids, iv.data());
  g.upload(table, tv);
  g.upload(pos, pv);
  g.run();
  auto yv = g.download(y);
  size_t bad = 0;
  for (int64_t t = 0; t < b * l; ++t)
    for (int64_t x = 0; x < d; ++x)
      bad += yv[(size_t)(t * d + x)] != tv[(size_t)(iv[(size_t)t] * d + x)] + pv[(size_t)((t % l) * d + x)];
  CHECK(bad == 0);
  CHECK(ctx.validation_messages() == 0);
}

TEST_CASE("token_embedding: odd width, f16 storage, bad inputs are errors") {
  auto& ctx = test::ctx();
  const int64_t vocab = 50, d = 13, b = 3, l = 5;
  Graph g(ctx);
  Tensor ids = g.input({b, l}, DType::I32), table = g.input({vocab, d}, DType::F16), pos = g.input({l, d}, DType::F16);
  Tensor y = ops::token_embedding(ids, table, pos);
  g.keep(y);
  CHECK_THROWS_AS(ops::token_embedding(table, table, pos), Error);                               // ids not i32
  CHECK_THROWS_AS(ops::token_embedding(g.input({b, 9}, DType::I32), table, pos), Error);         // 9 > 5 positions
  CHECK_THROWS_AS(ops::token_embedding(ids, table, g.input({l, 12}, DType::F16)), Error);        // width mismatch
  g.compile();
  auto tv = test::round_to(DType::F16, test::randn((size_t)(vocab * d), 61));
  auto pv = test::round_to(DType::F16, test::randn((size_t)(l * d), 62));
  std::vector<int32_t> iv((size_t)(b * l));
  for (size_t i = 0; i < iv.size(); ++i) iv[i] = (int32_t)((i * 7) % vocab);
  g.upload_i32(ids, iv.data());
  g.upload(table, tv);
  g.upload(pos, pv);
  g.run();
  auto yv = g.download(y);
  std::vector<double> ref(yv.size());
  for (int64_t t = 0; t < b * l; ++t)
    for (int64_t x = 0; x < d; ++x)
      ref[(size_t)(t * d + x)] = (double)tv[(size_t)(iv[(size_t)t] * d + x)] + pv[(size_t)((t % l) * d + x)];
  CHECK(test::rel_l2(yv, ref) < 2e-3);
  CHECK(ctx.validation_messages() == 0);
}
