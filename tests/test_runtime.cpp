// The runtime itself: device facts, the activation planner, staging round trips, the graph's
// barriers, and the elementwise family against a double-precision CPU reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <thread>

#include "runtime/gpu/context.h"
#include "runtime/gpu/graph.h"
#include "runtime/gpu/memory.h"
#include "runtime/gpu/scratch_arena.h"
#include "runtime/ops.h"
#include "tests/test_util.h"

using namespace vksd;

TEST_CASE("device: limits are queried and sane") {
  const auto& i = test::ctx().info();
  CHECK(i.max_storage_buffer_range > 0);
  CHECK(i.max_texel_buffer_elements >= 65536);
  CHECK(i.subgroup_size >= 1);
  CHECK(!i.name.empty());
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("planner: live tensors never overlap, dead ones share bytes") {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<PlanItem> items(60);
    for (auto& it : items) {
      it.first = (int)(rng() % 100);
      it.last = it.first + (int)(rng() % 20);
      it.bytes = 1 + rng() % 100000;
    }
    VkDeviceSize peak = plan_offsets(items);
    VkDeviceSize sum = 0;
    for (size_t a = 0; a < items.size(); ++a) {
      sum += align_up(items[a].bytes, kTensorAlignment);
      CHECK(items[a].offset % kTensorAlignment == 0);
      CHECK(items[a].offset + items[a].bytes <= peak);
      for (size_t b = a + 1; b < items.size(); ++b) {
        bool live_together = items[a].first <= items[b].last && items[b].first <= items[a].last;
        bool share = items[a].offset < items[b].offset + items[b].bytes && items[b].offset < items[a].offset + items[a].bytes;
        CHECK_FALSE((live_together && share));
      }
    }
    CHECK(peak < sum);  // reuse happened
  }
  // A chain a->b->c->d: only two are ever alive together, so the peak is two tensors.
  std::vector<PlanItem> chain = {{1024, 0, 1}, {1024, 1, 2}, {1024, 2, 3}, {1024, 3, 4}};
  CHECK(plan_offsets(chain) == 2048);
}

TEST_CASE("fp16 conversion is exact round-to-nearest-even") {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN payloads
    CHECK(f32_to_f16(f16_to_f32((uint16_t)h)) == h);
  }
  CHECK(f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);  // tie -> even
  CHECK(f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);
  CHECK(f32_to_f16(70000.f) == 0x7c00);
}

TEST_CASE("staging: upload/download round trip, f32 and f16, larger than one staging chunk") {
  auto& c = test::ctx();
  Arena arena(c, "test");
  for (DType dt : {DType::F32, DType::F16}) {
    auto t = arena.alloc({(int64_t)(70u << 20) / 4 + 3}, dt);  // > 64 MiB staging chunk in f32
    auto v = test::round_to(dt, test::randn((size_t)t.numel(), 1));
    upload(c, t, v.data());
    auto back = download(c, t);
    CHECK(back == v);
  }
  CHECK(c.validation_messages() == 0);
}

static std::vector<double> ref_act(const std::vector<float>& x, int act) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double v = x[i];
    switch (act) {
      case 1: y[i] = v / (1 + std::exp(-v)); break;
      case 2: y[i] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); break;
      case 3: y[i] = v / (1 + std::exp(-1.702 * v)); break;
      default: y[i] = v;
    }
  }
  return y;
}

TEST_CASE("eltwise: add, mul, axpby, activations, per-channel broadcast (f32, f16)") {
  auto& c = test::ctx();
  for (DType dt : {DType::F32, DType::F16}) {
    Graph g(c);
    const Shape shape = {2, 5, 7, 9};  // odd sizes, not multiples of any workgroup
    size_t n = (size_t)shape_numel(shape);
    auto av = test::round_to(dt, test::randn(n, 10, 2.f));
    auto bv = test::round_to(dt, test::randn(n, 11));
    auto cv = test::round_to(dt, test::randn(10, 12));
    Tensor a = g.input(shape, dt), b = g.input(shape, dt), ch = g.input({2, 5}, dt);
    Tensor s = ops::add(a, b), m = ops::mul(a, b), x = ops::axpby(a, 0.5f, b, -2.f);
    Tensor si = ops::silu(a), ge = ops::gelu(a), qg = ops::quick_gelu(a), pc = ops::add_per_channel(a, ch);
    for (Tensor t : {s, m, x, si, ge, qg, pc}) g.keep(t);
    g.compile();
    g.upload(a, av);
    g.upload(b, bv);
    g.upload(ch, cv);
    g.run();
    std::vector<double> rs(n), rm(n), rx(n), rpc(n);
    for (size_t i = 0; i < n; ++i) {
      rs[i] = (double)av[i] + bv[i];
      rm[i] = (double)av[i] * bv[i];
      rx[i] = 0.5 * av[i] - 2.0 * bv[i];
      rpc[i] = (double)av[i] + cv[i / (7 * 9)];
    }
    double tol = test::tol_for(dt);
    CHECK(test::rel_l2(g.download(s), rs) < tol);
    CHECK(test::rel_l2(g.download(m), rm) < tol);
    CHECK(test::rel_l2(g.download(x), rx) < tol);
    CHECK(test::rel_l2(g.download(pc), rpc) < tol);
    CHECK(test::rel_l2(g.download(si), ref_act(av, 1)) < tol);
    CHECK(test::rel_l2(g.download(ge), ref_act(av, 2)) < tol);
    CHECK(test::rel_l2(g.download(qg), ref_act(av, 3)) < tol);
  }
  CHECK(c.validation_messages() == 0);
}

TEST_CASE("graph: replay, barriers only where needed, activation reuse") {
  auto& c = test::ctx();
  Graph g(c);
  const int64_t n = 1000;
  Tensor x = g.input({n}, DType::F32);
  // Two independent branches then a chain: x+x and 2x need no barrier between them.
  Tensor a = ops::add(x, x);
  Tensor b = ops::scale(x, 2.f);
  Tensor d = ops::sub(a, b);     // RAW on a and b -> one barrier
  Tensor e = ops::scale(d, 3.f); // RAW -> barrier
  Tensor f = ops::add(e, x);     // RAW -> barrier
  g.keep(f);
  g.compile();
  CHECK(g.dispatch_count() == 5);
  CHECK(g.barrier_count() == 3);
  for (int run = 0; run < 3; ++run) {
    auto xv = test::randn(n, 100 + run);
    g.upload(x, xv);
    g.run();
    auto fv = g.download(f);
    for (int64_t i = 0; i < n; ++i) CHECK(fv[i] == doctest::Approx(xv[i]).epsilon(1e-6));
  }
  // a, b dead after d: the planner reuses their bytes for e and f.
  CHECK(g.peak_bytes() < 7 * align_up(n * 4, kTensorAlignment));
  CHECK(c.validation_messages() == 0);
}

namespace {
// f = 3 * (x + x) + x = 7x through two temporaries, in a graph that may share a scratch arena.
struct SevenX {
  Graph g;
  Tensor x, f;
  SevenX(Context& c, int64_t n, std::shared_ptr<ScratchArena> scratch) : g(c) {
    if (scratch) g.use_scratch(std::move(scratch));
    x = g.input({n}, DType::F32);
    f = ops::add(ops::scale(ops::add(x, x), 3.f), x);
    g.keep(f);
    g.compile();
  }
  bool check(const std::vector<float>& xv) {
    auto fv = g.download(f);
    for (size_t i = 0; i < xv.size(); ++i)
      if (std::abs(fv[i] - 7.f * xv[i]) > 1e-5f * (1.f + std::abs(xv[i]))) return false;
    return true;
  }
};
}  // namespace

TEST_CASE("scratch arena: graphs share their temporaries' memory, keep their inputs, and re-record when it grows") {
  auto& c = test::ctx();
  auto scratch = std::make_shared<ScratchArena>(c);
  SevenX small(c, 1000, scratch);
  REQUIRE(small.g.scratch_bytes() > 0);
  CHECK(scratch->size() == std::max<VkDeviceSize>(small.g.scratch_bytes(), 256));
  // The input is written now and read only after the larger graph has run (and moved the arena).
  const auto xs = test::randn(1000, 7);
  small.g.upload(small.x, xs);
  SevenX large(c, 300000, scratch);
  CHECK(large.g.scratch_bytes() > small.g.scratch_bytes());
  CHECK(scratch->size() == large.g.scratch_bytes());  // the largest, not the sum
  const auto xl = test::randn(300000, 8);
  large.g.upload(large.x, xl);
  large.g.run();
  CHECK(large.check(xl));
  small.g.run();  // recorded against the first buffer: re-records against the new one
  CHECK(small.check(xs));
  // Inputs and kept outputs stay in each graph's own memory: the large graph's output survives
  // the small graph's run over the shared bytes.
  CHECK(large.check(xl));
  // Threads take turns: each graph's runs stay correct however they interleave.
  const auto xs2 = test::randn(1000, 9), xl2 = test::randn(300000, 10);
  bool ok_small = true, ok_large = true;
  std::thread t([&] {
    for (int i = 0; i < 10; ++i) {
      small.g.upload(small.x, xs2);
      small.g.run();
      ok_small = ok_small && small.check(xs2);
    }
  });
  for (int i = 0; i < 10; ++i) {
    large.g.upload(large.x, xl2);
    large.g.run();
    ok_large = ok_large && large.check(xl2);
  }
  t.join();
  CHECK(ok_small);
  CHECK(ok_large);
  // Without an arena a graph's temporaries are its own (peak = its whole plan).
  SevenX alone(c, 1000, nullptr);
  CHECK(alone.g.scratch_bytes() == 0);
  CHECK(c.validation_messages() == 0);
}

TEST_CASE("elementwise over a tensor larger than maxStorageBufferRange") {
  auto& c = test::ctx();
  const auto& info = c.info();
  // 2 x 128 x 512 x 512 f32 = 256 MiB: above lavapipe's 128 MiB SSBO range.
  Shape shape = {2, 128, 512, 512};
  uint64_t bytes = (uint64_t)shape_numel(shape) * 4;
  REQUIRE(bytes > info.max_storage_buffer_range);
  Graph g(c);
  Tensor x = g.input(shape, DType::F32);
  Tensor y = ops::axpby(x, 2.f, x, 1.f);
  g.keep(y);
  g.compile();
  std::vector<float> xv((size_t)shape_numel(shape));
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = (float)(i % 1000003) * 1e-3f;
  g.upload(x, xv);
  g.run();
  auto yv = g.download(y);
  size_t bad = 0;
  for (size_t i = 0; i < xv.size(); ++i) bad += yv[i] != 3.f * xv[i];
  CHECK(bad == 0);
  CHECK(c.validation_messages() == 0);
}
