// Elementwise ops: one shader (eltwise.comp) specialised by activation and mode.
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace vksd::ops {

Grid grid_1d(Graph& g, uint64_t n, uint32_t per_group) {
  uint64_t groups = (n + per_group - 1) / per_group;
  uint64_t max_x = g.device_info().max_workgroup_count[0];
  if (groups <= max_x) return {(uint32_t)std::max<uint64_t>(groups, 1), 1};
  uint64_t y = (groups + max_x - 1) / max_x;
  uint64_t x = (groups + y - 1) / y;
  return {(uint32_t)x, (uint32_t)y};
}

namespace {
struct EltPush {
  uint32_t n, b_div, b_mod;
  float alpha, beta;
  uint32_t groups_x;
};

Tensor eltwise(const char* label, Tensor a, Tensor b, uint32_t b_div, uint32_t b_mod, float alpha, float beta,
               Act act, int mode) {
  Graph& g = *a.g;
  Tensor y = g.temp(a.shape(), a.dtype());
  Grid grid = grid_1d(g, (uint64_t)a.numel(), 256);
  EltPush p{(uint32_t)a.numel(), b_div, b_mod, alpha, beta, grid.x};
  Dispatch d;
  d.kernel = "eltwise";
  d.label = label;
  d.spec = {(uint32_t)act, (uint32_t)mode};
  d.args = {in(a), in(b.valid() ? b : a), out(y)};
  d.set_push(p);
  d.groups[0] = grid.x;
  d.groups[1] = grid.y;
  g.add(std::move(d));
  return y;
}

void same_numel(const char* op, Tensor a, Tensor b) {
  if (a.numel() != b.numel())
    fail(std::string(op) + ": shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()) + " differ");
}
}  // namespace

Tensor add(Tensor a, Tensor b, Act act) {
  same_numel("add", a, b);
  return eltwise("add", a, b, 1, (uint32_t)b.numel(), 1.f, 1.f, act, 0);
}
Tensor sub(Tensor a, Tensor b) {
  same_numel("sub", a, b);
  return eltwise("sub", a, b, 1, (uint32_t)b.numel(), 1.f, -1.f, Act::None, 0);
}
Tensor axpby(Tensor a, float alpha, Tensor b, float beta) {
  same_numel("axpby", a, b);
  return eltwise("axpby", a, b, 1, (uint32_t)b.numel(), alpha, beta, Act::None, 0);
}
Tensor mul(Tensor a, Tensor b) {
  same_numel("mul", a, b);
  return eltwise("mul", a, b, 1, (uint32_t)b.numel(), 1.f, 1.f, Act::None, 1);
}
Tensor scale(Tensor a, float s) { return eltwise("scale", a, {}, 1, 0, s, 0.f, Act::None, 0); }
Tensor activation(Tensor x, Act act) { return eltwise("activation", x, {}, 1, 0, 1.f, 0.f, act, 0); }

Tensor add_per_channel(Tensor x, Tensor v) {
  if (x.rank() < 2 || v.numel() != x.dim(0) * x.dim(1))
    fail("add_per_channel: " + shape_str(v.shape()) + " does not match [N, C] of " + shape_str(x.shape()));
  int64_t spatial = x.numel() / (x.dim(0) * x.dim(1));
  return eltwise("add_per_channel", x, v, (uint32_t)spatial, (uint32_t)v.numel(), 1.f, 1.f, Act::None, 0);
}

}  // namespace vksd::ops
