#include "runtime/nn/blocks.h"

#include "runtime/error.h"

namespace vksd::nn {

// Weights are bound one statement at a time (never two in one argument list, whose order C++
// leaves open), so that a layout lists them in a fixed order.

Tensor LayoutRecorder::bind(Graph& g, const std::string& name, const Shape& shape) const {
  auto [it, fresh] = seen_.emplace(name, shape);
  if (fresh) specs_.push_back({name, shape});
  else if (it->second != shape)
    fail("network layout: tensor '" + name + "' is used with shape " + shape_str(shape) + " and " +
         shape_str(it->second));
  return g.input(shape, storage(), name);
}

Tensor linear(const Scope& s, Tensor x, int64_t out, Tensor residual) {
  Tensor w = s.w("weight", {out, x.dim(-1)});
  Tensor b = s.w("bias", {out});
  return residual.valid() ? ops::linear(x, w, b, residual) : ops::linear(x, w, b);
}

Tensor linear_without_bias(const Scope& s, Tensor x, int64_t out) {
  return ops::linear(x, s.w("weight", {out, x.dim(-1)}), Tensor{});
}

Tensor conv1x1_as_linear(const Scope& s, Tensor x, int64_t out) {
  Tensor w = s.w("weight", {out, x.dim(-1), 1, 1});
  Tensor b = s.w("bias", {out});
  return ops::linear(x, s.graph().view(w, {out, x.dim(-1)}), b);
}

Tensor conv(const Scope& s, Tensor x, int64_t out, int k, ops::Conv2d p, Tensor residual) {
  Tensor w = s.w("weight", {out, x.dim(1), k, k});
  Tensor b = s.w("bias", {out});
  return residual.valid() ? ops::conv2d(x, w, b, p, residual) : ops::conv2d(x, w, b, p);
}

Tensor group_norm(const Scope& s, Tensor x, float eps, bool silu, bool reuse_input) {
  // Every GroupNorm in SD has 32 groups (LDM's normalization() / Normalize()).
  const int64_t c = x.dim(1);
  Tensor gamma = s.w("weight", {c});
  Tensor beta = s.w("bias", {c});
  return ops::group_norm(x, gamma, beta, 32, eps, silu, reuse_input);
}

Tensor layer_norm(const Scope& s, Tensor x, float eps) {
  const int64_t c = x.dim(-1);
  Tensor gamma = s.w("weight", {c});
  Tensor beta = s.w("bias", {c});
  return ops::layer_norm(x, gamma, beta, eps);
}

}  // namespace vksd::nn
