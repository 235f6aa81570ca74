#include "runtime/nn/blocks.h"

#include "runtime/error.h"

namespace vksd::nn {

Tensor linear(const Scope& s, Tensor x, Tensor residual) {
  Tensor w = s.w("weight");
  if (w.rank() != 2) fail(s.quoted("weight") + " is not a linear weight: shape " + shape_str(w.shape()));
  if (x.dim(-1) != w.dim(1))
    fail(s.quoted() + ": input width " + std::to_string(x.dim(-1)) + " does not match weight " +
         shape_str(w.shape()));
  Tensor b = s.has("bias") ? s.w("bias", {w.dim(0)}) : Tensor{};
  return residual.valid() ? ops::linear(x, w, b, residual) : ops::linear(x, w, b);
}

Tensor conv1x1_as_linear(const Scope& s, Tensor x) {
  Tensor w = s.w("weight");
  if (w.rank() == 4) {
    if (w.dim(2) != 1 || w.dim(3) != 1) fail(s.quoted("weight") + " is not a 1x1 conv: " + shape_str(w.shape()));
    w = s.graph().view(w, {w.dim(0), w.dim(1)});
  }
  if (x.dim(-1) != w.dim(1))
    fail(s.quoted() + ": input width " + std::to_string(x.dim(-1)) + " does not match weight " +
         shape_str(w.shape()));
  Tensor b = s.has("bias") ? s.w("bias", {w.dim(0)}) : Tensor{};
  return ops::linear(x, w, b);
}

Tensor conv(const Scope& s, Tensor x, ops::Conv2d p, Tensor residual) {
  Tensor w = s.w("weight");
  if (w.rank() != 4) fail(s.quoted("weight") + " is not a conv weight: shape " + shape_str(w.shape()));
  if (x.dim(1) != w.dim(1))
    fail(s.quoted() + ": input has " + std::to_string(x.dim(1)) + " channels, weight " + shape_str(w.shape()));
  Tensor b = s.has("bias") ? s.w("bias", {w.dim(0)}) : Tensor{};
  return residual.valid() ? ops::conv2d(x, w, b, p, residual) : ops::conv2d(x, w, b, p);
}

Tensor group_norm(const Scope& s, Tensor x, float eps, bool silu) {
  // Every GroupNorm in SD 1.x has 32 groups (LDM's normalization() / Normalize()).
  const int64_t c = x.dim(1);
  return ops::group_norm(x, s.w("weight", {c}), s.w("bias", {c}), 32, eps, silu);
}

Tensor layer_norm(const Scope& s, Tensor x, float eps) {
  const int64_t c = x.dim(-1);
  return ops::layer_norm(x, s.w("weight", {c}), s.w("bias", {c}), eps);
}

}  // namespace vksd::nn
