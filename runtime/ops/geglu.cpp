// GEGLU (shaders/geglu.comp): the gated GELU of SD's transformer feed-forward.
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace vksd::ops {

Tensor geglu(Tensor x) {
  Graph& g = *x.g;
  if (x.rank() < 1 || x.dim(-1) % 2)
    fail("geglu: last dimension of " + shape_str(x.shape()) + " must be even (a and gate halves)");
  const int64_t d = x.dim(-1) / 2, rows = x.numel() / x.dim(-1);
  if ((uint64_t)x.numel() >= (1ull << 32)) fail("geglu: tensor " + shape_str(x.shape()) + " is too large");
  Shape out_shape = x.shape();
  out_shape.back() = d;
  Tensor y = g.temp(out_shape, x.dtype());
  const int lanes = d % 4 == 0 ? 4 : 1;
  const uint64_t units = (uint64_t)rows * d / lanes;
  Grid grid = grid_1d(g, units, 256);
  struct {
    uint32_t n, width, groups_x;
  } p{(uint32_t)units, (uint32_t)(d / lanes), grid.x};
  Dispatch dsp;
  dsp.kernel = "geglu";
  dsp.spec = {(uint32_t)lanes};
  dsp.args = {in(x, lanes), out(y, lanes)};
  dsp.set_push(p);
  dsp.groups[0] = grid.x;
  dsp.groups[1] = grid.y;
  g.add(std::move(dsp));
  return y;
}

}  // namespace vksd::ops
