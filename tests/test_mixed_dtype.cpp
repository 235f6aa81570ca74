// Weights stored in fp16 with activations in fp32 (the UNet's default on devices with fp16):
// every op's output takes the ACTIVATION's dtype, so fp16 weights never round fp32 activations.
#include <doctest/doctest.h>

#include "runtime/gpu/graph.h"
#include "runtime/ops.h"
#include "tests/test_util.h"

using namespace vksd;

TEST_CASE("mixed dtypes: fp16 weights keep fp32 activations in fp32 (linear, 1x1 and 3x3 conv)") {
  Graph g(test::ctx());
  Tensor x = g.input({1, 8, 5, 6}, DType::F32, "x");
  Tensor w1 = g.input({4, 8, 1, 1}, DType::F16, "w1");
  Tensor w3 = g.input({4, 8, 3, 3}, DType::F16, "w3");
  Tensor wl = g.input({3, 6}, DType::F16, "wl");
  Tensor y1 = ops::conv2d(x, w1, {}, ops::Conv2d::same(1));
  Tensor y3 = ops::conv2d(x, w3, {}, ops::Conv2d::same(3));
  Tensor yl = ops::linear(x, wl);
  CHECK(y1.dtype() == DType::F32);
  CHECK(y3.dtype() == DType::F32);
  CHECK(yl.dtype() == DType::F32);
  g.keep(y1);
  g.compile();
  // Values: x has digits below fp16 precision; a 1x1 conv with a one-hot weight must keep them.
  std::vector<float> xv = test::randn(8 * 30, 5);
  for (auto& v : xv) v = 1.f + v * 1e-4f;  // fp16 would round these to multiples of ~1e-3
  std::vector<float> w1v(4 * 8, 0.f);
  for (int o = 0; o < 4; ++o) w1v[o * 8 + o] = 1.f;  // y1[o] = x[o], exactly representable weights
  g.upload(x, xv);
  g.upload(w1, w1v);
  g.run();
  auto out = g.download(y1);
  std::vector<float> want(xv.begin(), xv.begin() + 4 * 30);
  CHECK(test::max_abs_diff(out, want) < 1e-7);
  CHECK(test::ctx().validation_messages() == 0);
}
