// 2-D convolution: 1x1 stride-1 unpadded convolutions are plain GEMMs over the pixels
// (matmul.comp); every other kernel/stride/padding goes to the implicit-GEMM conv2d.comp.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#include "runtime/ops/gemm.h"
#include "runtime/ops/matrix_unit_ops.h"

namespace vksd::ops {
namespace {

struct ConvPush {
  uint32_t Ci, H, W, Co, Ho, Wo;
  int32_t pad_top;
  uint32_t row_blocks;
  uint32_t N;
};

// Register tile (channels x pixels per invocation) and workgroup shape, from device
// properties; VKSD_CONV_TILES=tm,tn,px,cy overrides (the benchmark compares variants).
struct ConvTiles { uint32_t tm, tn, px, cy; };
ConvTiles conv_tiles(Graph& g, int64_t Co, int64_t pixel_blocks) {
  const DeviceProfile& prof = g.profile();
  const auto& f = prof.conv_tiles;  // the benchmark's forced tiles
  if (f[0]) return ConvTiles{f[0], f[1], f[2], f[3]};
  // llvmpipe: lanes of a subgroup take neighbouring pixel blocks of the same channels, so the
  // weight fetches of a subgroup are uniform. GPUs: smaller tiles, more invocations.
  // Measured at 320->320 64x64 and 2560->1280 8x8: 16x8 >= 8x8 > 16x16, 32x8, 8x16.
  ConvTiles t = prof.cpu ? ConvTiles{16, 8, prof.subgroup ? prof.subgroup : 8, 4} : ConvTiles{4, 4, 32, 8};
  while (t.cy > 1 && (int64_t)t.tm * t.cy / 2 >= Co) t.cy /= 2;
  while (t.px > 1 && (int64_t)t.px / 2 >= pixel_blocks) t.px /= 2;
  return t;
}

// "conv3x3", "conv3x3s2": the dispatch's name in profiles.
std::string conv_label(int64_t kh, int64_t kw, int stride) {
  return "conv" + std::to_string(kh) + "x" + std::to_string(kw) + (stride > 1 ? "s" + std::to_string(stride) : "");
}

// The convolution as the GEMM y[n] = w [Co, K] · B(x[n]) [K, pixels], K = Ci*kh*kw: B is x
// itself for a 1x1 stride-1 unpadded conv, its im2col (gathered by the kernel) otherwise.
detail::GemmDesc conv_as_gemm(Tensor x, Tensor w, Tensor b, Tensor residual, int64_t pixels, const Shape& out_shape,
                              std::string label) {
  detail::GemmDesc d;
  d.K = w.numel() / w.dim(0);
  d.a = x.g->view(w, {w.dim(0), d.K});
  d.b = x;
  d.bias = b;
  d.residual = residual;
  d.batch = x.dim(0);
  d.M = w.dim(0);
  d.N = pixels;
  d.a_batch = 0;  // one weight for every image
  d.a_row = d.K;
  d.b_batch = x.numel() / x.dim(0);
  d.b_row = pixels;
  d.trans_b = false;
  d.bias_along = b.valid() ? detail::GemmDesc::BiasAlong::M : detail::GemmDesc::BiasAlong::None;
  d.out_shape = out_shape;
  d.label = std::move(label);
  d.out_dtype_of = x;  // fp16 weights must not round fp32 activations
  return d;
}

}  // namespace

Tensor conv2d(Tensor x, Tensor w, Tensor b, Conv2d p, Tensor residual) {
  if (!x.valid() || !w.valid()) fail("conv2d: input or weight is missing");
  if (x.rank() != 4) fail("conv2d: input " + shape_str(x.shape()) + " must be [N, C, H, W]");
  if (w.rank() != 4) fail("conv2d: weight " + shape_str(w.shape()) + " must be [Cout, Cin, kh, kw]");
  if (x.g != w.g) fail("conv2d: input and weight belong to different graphs");
  int64_t N = x.dim(0), Ci = x.dim(1), H = x.dim(2), W = x.dim(3);
  int64_t Co = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  if (w.dim(1) != Ci)
    fail("conv2d: input " + shape_str(x.shape()) + " has " + std::to_string(Ci) + " channels but weight " +
         shape_str(w.shape()) + " expects " + std::to_string(w.dim(1)));
  if (b.valid() && b.numel() != Co)
    fail("conv2d: bias " + shape_str(b.shape()) + " does not match " + std::to_string(Co) + " output channels");
  if (p.stride < 1 || p.pad_top < 0 || p.pad_bottom < 0 || p.pad_left < 0 || p.pad_right < 0)
    fail("conv2d: stride must be >= 1 and padding >= 0");
  int64_t Hp = H + p.pad_top + p.pad_bottom, Wp = W + p.pad_left + p.pad_right;
  if (Hp < kh || Wp < kw)
    fail("conv2d: kernel " + std::to_string(kh) + "x" + std::to_string(kw) + " is larger than the padded input " +
         shape_str(x.shape()));
  if (kh > 7 || kw > 7) fail("conv2d: kernels larger than 7x7 are not supported");
  int64_t Ho = (Hp - kh) / p.stride + 1, Wo = (Wp - kw) / p.stride + 1;
  Shape out_shape = {N, Co, Ho, Wo};
  if (residual.valid() && residual.numel() != shape_numel(out_shape))
    fail("conv2d: residual " + shape_str(residual.shape()) + " does not match output " + shape_str(out_shape));
  Graph& g = *x.g;

  if (kh == 1 && kw == 1 && p.stride == 1 && Hp == H && Wp == W)
    return detail::gemm(conv_as_gemm(x, w, b, residual, H * W, out_shape, "conv1x1"));

  // One invocation loops over Ci (the window loops are unrolled): keep it within lavapipe's
  // 65,535-iteration budget.
  if (Ci > 60000) fail("conv2d: " + std::to_string(Ci) + " input channels exceed one invocation's loop budget");
  const double flops = 2.0 * (double)N * Co * Ho * Wo * Ci * kh * kw;
  const DeviceProfile& prof = g.profile();
  // Small problems: one compact variant (device_profile.h), the same for every such conv of a
  // kernel size, stride and epilogue, so a small network compiles few, short pipelines.
  const bool compact = flops < prof.compact_conv_below_flops && !prof.conv_tiles[0];
  if (!compact && detail::matrix_unit_takes(g, x, w, Ci * kh * kw, flops, true)) {
    // The implicit GEMM on the matrix unit.
    const detail::GemmDesc d = conv_as_gemm(x, w, b, residual, Ho * Wo, out_shape, conv_label(kh, kw, p.stride));
    const detail::CoopConv cc{(uint32_t)H, (uint32_t)W, (uint32_t)Wo, (uint32_t)kh, (uint32_t)kw, (uint32_t)p.stride,
                              p.pad_top, p.pad_left};
    return detail::gemm_on_matrix_unit(d, &cc);
  }
  ConvTiles t;
  uint32_t rb = 1;  // output rows per pixel block
  if (compact) {
    t = ConvTiles{4, 4, 8, 4};
  } else {
    t = conv_tiles(g, Co, 1);
    // Narrow rows (the UNet's 4x4 level) take a narrower tile instead of computing padding.
    while (t.tn > 1 && t.tn / 2 >= Wo && !prof.conv_tiles[0]) t.tn /= 2;
    const uint32_t tn = t.tn;
    const int64_t row_blocks = (Wo + tn - 1) / tn;
    const int64_t sg_size = prof.subgroup ? prof.subgroup : 8;
    // Too few pixel blocks to fill a subgroup (the UNet's 4x4 level at batch 1: 4 blocks of one
    // row): blocks of several rows instead, and the lanes of a subgroup take different output
    // channels. Measured on llvmpipe at 1280->1280 @4x4: ~2.5x the one-row tiles.
    if (prof.conv_multi_row && N * Ho * row_blocks < sg_size && Ho > 1)
      rb = (uint32_t)std::min<int64_t>(Ho, std::max<int64_t>(1, 16 / tn));
    if (rb > 1) {
      t.px = 1;
      t.cy = (uint32_t)sg_size;
      while (t.cy > 1 && (int64_t)t.tm * t.cy / 2 >= Co) t.cy /= 2;
    } else {
      t = conv_tiles(g, Co, N * Ho * row_blocks);  // the pixel blocks of all N images form one range
    }
    t.tn = tn;
  }
  const int64_t row_blocks = (Wo + t.tn - 1) / t.tn;
  const int64_t row_groups = (Ho + rb - 1) / rb;
  Tensor y = g.temp(out_shape, x.dtype());
  ConvPush pc{(uint32_t)Ci, (uint32_t)H, (uint32_t)W, (uint32_t)Co, (uint32_t)Ho, (uint32_t)Wo,
              p.pad_top, (uint32_t)row_blocks, (uint32_t)N};
  // vec4 fetch variants (see conv2d.comp): weights in blocks of 4 input channels, and the
  // aligned middle of each input row.
  bool wvec = !compact && Ci % 4 == 0;
  bool xvec = !compact && W % 4 == 0 && t.tn % 4 == 0 && p.pad_left + p.stride <= kw;
  // Subgroup-shared weight fetches (lanes of a subgroup = neighbouring pixel blocks, same
  // channels). Enabled where measured: llvmpipe (subgroup size 8, workgroup rows of 8).
  uint32_t sg = 0;
  if (wvec && prof.conv_shared_weights && t.px % prof.subgroup == 0) sg = prof.subgroup;
  Dispatch d;
  d.kernel = "conv2d";
  d.label = conv_label(kh, kw, p.stride);
  d.spec = {t.px, t.cy, t.tm, t.tn, (uint32_t)kh, (uint32_t)kw, (uint32_t)p.stride, b.valid() ? 1u : 0u,
            residual.valid() ? 1u : 0u, wvec ? 1u : 0u, xvec ? 1u : 0u, (uint32_t)p.pad_left, sg, rb};
  d.args = {in(x), in(w), in(b.valid() ? b : w), in(residual.valid() ? residual : x), out(y),
            in(x, xvec ? 4 : 1), in(w, wvec ? 4 : 1)};
  d.set_push(pc);
  if ((uint64_t)N * Ho * row_blocks >= (1ull << 32)) fail("conv2d: output " + shape_str(out_shape) + " is too large");
  d.groups[0] = (uint32_t)((N * row_groups * row_blocks + t.px - 1) / t.px);
  d.groups[1] = (uint32_t)((Co + (int64_t)t.tm * t.cy - 1) / ((int64_t)t.tm * t.cy));
  if (rb > 1) {  // channel blocks along x (see conv2d.comp)
    std::swap(d.spec[0], d.spec[1]);
    std::swap(d.groups[0], d.groups[1]);
  }
  d.groups[2] = 1;
  d.flops = flops;
  g.add(std::move(d));
  return y;
}

Tensor conv2d(Tensor x, Tensor w, Tensor b, Conv2d p) { return conv2d(x, w, b, p, Tensor{}); }

}  // namespace vksd::ops
