// Layout ops (shaders/layout.comp): nearest upsampling, channel concatenation, NCHW <-> NLC
// transposes and batch slices. Pure data movement, exact in every dtype.
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace vksd::ops {

namespace {

struct LayoutPush {
  uint32_t n, d0, d1, d2, groups_x;
};

enum LayoutMode : uint32_t { Upsample = 0, Concat = 1, ToNlc = 2, ToNchw = 3, Copy = 4 };

Tensor layout_op(const char* label, LayoutMode mode, Tensor a, Tensor b, const Shape& out_shape, uint32_t d0,
                 uint32_t d1, uint32_t d2, int lanes) {
  Graph& g = *a.g;
  if (shape_numel(out_shape) >= (1ll << 32)) fail(std::string(label) + ": output " + shape_str(out_shape) + " is too large");
  Tensor y = g.temp(out_shape, a.dtype());
  const uint64_t units = (uint64_t)y.numel() / lanes;
  Grid grid = grid_1d(g, units, 256);
  Dispatch d;
  d.kernel = "layout";
  d.label = label;
  d.spec = {mode, (uint32_t)lanes};
  d.args = {in(a, lanes), in(b.valid() ? b : a, lanes), out(y, lanes)};
  d.set_push(LayoutPush{(uint32_t)units, d0, d1, d2, grid.x});
  d.groups[0] = grid.x;
  d.groups[1] = grid.y;
  g.add(std::move(d));
  return y;
}

void need_nchw(const char* op, Tensor x) {
  if (x.rank() != 4) fail(std::string(op) + ": input " + shape_str(x.shape()) + " must be [N, C, H, W]");
}

}  // namespace

Tensor upsample_nearest2x(Tensor x) {
  need_nchw("upsample_nearest2x", x);
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  return layout_op("upsample_nearest2x", Upsample, x, {}, {n, c, 2 * h, 2 * w}, (uint32_t)w, (uint32_t)h, 0, 1);
}

Tensor concat_channels(Tensor a, Tensor b) {
  if (a.rank() < 2 || b.rank() != a.rank() || a.dim(0) != b.dim(0))
    fail("concat_channels: " + shape_str(a.shape()) + " and " + shape_str(b.shape()) + " are not [N, C, ...] alike");
  for (int i = 2; i < a.rank(); ++i)
    if (a.dim(i) != b.dim(i))
      fail("concat_channels: spatial sizes of " + shape_str(a.shape()) + " and " + shape_str(b.shape()) + " differ");
  const int64_t n = a.dim(0), ca = a.dim(1), cb = b.dim(1), s = a.numel() / (n * ca);
  Shape out_shape = a.shape();
  out_shape[1] = ca + cb;
  const int lanes = s % 4 == 0 ? 4 : 1;
  return layout_op("concat_channels", Concat, a, b, out_shape, (uint32_t)(s / lanes), (uint32_t)ca, (uint32_t)cb, lanes);
}

Tensor nchw_to_nlc(Tensor x) {
  need_nchw("nchw_to_nlc", x);
  const int64_t n = x.dim(0), c = x.dim(1), s = x.dim(2) * x.dim(3);
  return layout_op("nchw_to_nlc", ToNlc, x, {}, {n, s, c}, (uint32_t)s, (uint32_t)c, 0, 1);
}

Tensor nlc_to_nchw(Tensor x, int64_t h, int64_t w) {
  if (x.rank() != 3 || x.dim(1) != h * w)
    fail("nlc_to_nchw: input " + shape_str(x.shape()) + " is not [N, " + std::to_string(h) + "*" + std::to_string(w) + ", C]");
  const int64_t n = x.dim(0), c = x.dim(2), s = h * w;
  return layout_op("nlc_to_nchw", ToNchw, x, {}, {n, c, h, w}, (uint32_t)s, (uint32_t)c, 0, 1);
}

Tensor slice_batch(Tensor x, int64_t begin, int64_t count) {
  if (x.rank() < 1 || begin < 0 || count <= 0 || begin + count > x.dim(0))
    fail("slice_batch: rows [" + std::to_string(begin) + ", " + std::to_string(begin + count) + ") outside " +
         shape_str(x.shape()));
  const int64_t inner = x.numel() / x.dim(0);
  Shape out_shape = x.shape();
  out_shape[0] = count;
  const int lanes = inner % 4 == 0 ? 4 : 1;
  return layout_op("slice_batch", Copy, x, {}, out_shape, (uint32_t)(begin * inner / lanes), 0, 0, lanes);
}

}  // namespace vksd::ops
