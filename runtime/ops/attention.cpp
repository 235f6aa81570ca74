// Multi-head attention: one dispatch of the flash-style kernel (shaders/attention.comp), or of
// its matrix-unit form (attention_coop.comp) where the device has one.
#include <algorithm>
#include <cmath>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#include "runtime/ops/matrix_unit_ops.h"

namespace vksd::ops {

namespace {

struct AttentionPush {
  uint32_t batch, heads, lq, lk, q_tiles;
  float scale_log2;
  uint32_t groups_x;
};

// Tile shape of one kernel variant.
struct AttentionTiles {
  uint32_t split;  // lanes sharing a query's head dim
  uint32_t qpi;    // queries per invocation
  uint32_t kb;     // keys per online-softmax block
  uint32_t wg;     // workgroup size
};

AttentionTiles choose_tiles(const DeviceInfo& dev, const DeviceProfile& prof, int64_t d4) {
  AttentionTiles t{1, 4, 16, 64};
  // Heads wider than 160 dims (the VAE's 512) do not fit one lane's registers: spread each
  // query's head dim over a cluster of subgroup lanes, 16 vec4s per lane.
  if (d4 > 40)
    while (d4 / t.split > 16 && t.split * 2 <= std::min<uint32_t>(dev.subgroup_size, 32) && d4 % (t.split * 2) == 0)
      t.split *= 2;
  int64_t dv = d4 / t.split;
  // Queries per invocation: enough to reuse each K/V load several times, few enough to keep
  // q and the accumulator (2 · QPI · DV vec4s) near registers and the unrolled shader small.
  // Measured on lavapipe (CPU time over 2 cores): D 40: QPI 4 KB 16 ≈ 19 GFLOP/s; D 80: QPI 2
  // ≈ 19; D 160: QPI 2 KB 8 ≈ 15; D 512 SPLIT 8: QPI 4 KB 8 ≈ 22.
  if (t.split > 1) {
    t.qpi = 4;
    t.kb = 4;
  } else {
    t.qpi = dv <= 10 ? 4 : 2;
    t.kb = dv <= 20 ? 16 : 8;
  }
  if (prof.gpu) t.qpi = 1;  // GPUs: more invocations beat register reuse
  return t;
}

}  // namespace

Tensor attention(Tensor q, Tensor k, Tensor v, int heads, bool causal, float scale) {
  Graph& g = *q.g;
  if (q.rank() != 3 || k.rank() != 3 || v.rank() != 3)
    fail("attention: q, k, v must be [B, L, H*D]; got " + shape_str(q.shape()) + ", " + shape_str(k.shape()) +
         ", " + shape_str(v.shape()));
  if (k.shape() != v.shape())
    fail("attention: k " + shape_str(k.shape()) + " and v " + shape_str(v.shape()) + " differ");
  const int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), width = q.dim(2);
  if (k.dim(0) != batch || k.dim(2) != width)
    fail("attention: q " + shape_str(q.shape()) + " and k " + shape_str(k.shape()) + " disagree in batch or width");
  if (heads <= 0 || width % heads)
    fail("attention: width " + std::to_string(width) + " is not divisible into " + std::to_string(heads) + " heads");
  const int64_t d = width / heads;
  if (d % 4 && !g.shapes_only())  // a kernel limit, not one of the op's shapes
    fail("attention: head dim " + std::to_string(d) + " is not a multiple of 4 (the kernel reads vec4 lanes)");
  if (causal && lq != lk) fail("attention: a causal mask needs Lq == Lk");
  if (scale == 0.f) scale = (float)(1.0 / std::sqrt((double)d));

  if (Tensor o = detail::attention_on_matrix_unit(q, k, v, heads, causal, scale); o.valid()) return o;
  const DeviceInfo& dev = g.device_info();
  const DeviceProfile& prof = g.profile();
  AttentionTiles t = choose_tiles(dev, prof, d / 4);
  const uint32_t dv = (uint32_t)(d / 4 / t.split);
  // Subgroup-shared K/V fetches (attention.comp, SG): where measured, llvmpipe (subgroup 8).
  const uint32_t sg =
      (prof.attention_shared_kv && t.split == 1 && !causal && t.wg % prof.subgroup == 0) ? prof.subgroup : 0;
  uint64_t q_tiles = (uint64_t)(lq + t.qpi - 1) / t.qpi;
  if (sg) q_tiles = (q_tiles + sg - 1) / sg * sg;  // a subgroup never spans two heads
  const uint64_t invocations = (uint64_t)batch * heads * q_tiles * t.split;
  Grid grid = grid_1d(g, invocations, t.wg);

  Tensor o = g.temp(q.shape(), q.dtype());
  AttentionPush p{(uint32_t)batch, (uint32_t)heads, (uint32_t)lq, (uint32_t)lk, (uint32_t)q_tiles,
                  scale * 1.4426950408889634f, grid.x};
  Dispatch dsp;
  dsp.kernel = "attention";
  dsp.label = causal ? "attention_causal" : "attention";
  dsp.spec = {t.wg, dv, t.split, t.qpi, t.kb, causal ? 1u : 0u, sg};
  dsp.args = {in(q, 4), in(k, 4), in(v, 4), out(o, 4)};
  dsp.set_push(p);
  dsp.groups[0] = grid.x;
  dsp.groups[1] = grid.y;
  dsp.flops = 4.0 * (double)batch * heads * (double)lq * (double)lk * (double)d;
  g.add(std::move(dsp));
  return o;
}

}  // namespace vksd::ops

namespace vksd::ops {

namespace {
struct AttentionProbsPush {
  uint32_t lq, lk, b;
  float scale_log2;
  uint32_t groups_x;
};
}  // namespace

Tensor attention_probs(Tensor q, Tensor k, int heads, int64_t b, float scale) {
  Graph& g = *q.g;
  if (q.rank() != 3 || k.rank() != 3)
    fail("attention_probs: q and k must be [B, L, H*D]; got " + shape_str(q.shape()) + ", " + shape_str(k.shape()));
  const int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), width = q.dim(2);
  if (k.dim(0) != batch || k.dim(2) != width)
    fail("attention_probs: q " + shape_str(q.shape()) + " and k " + shape_str(k.shape()) + " disagree in batch or width");
  if (b < 0 || b >= batch) fail("attention_probs: batch entry " + std::to_string(b) + " of " + std::to_string(batch));
  if (heads <= 0 || width % heads)
    fail("attention_probs: width " + std::to_string(width) + " is not divisible into " + std::to_string(heads) + " heads");
  const int64_t d = width / heads;
  if (d % 4) fail("attention_probs: head dim " + std::to_string(d) + " is not a multiple of 4 (vec4 lanes)");
  // Loop budget: 2 · heads · Lk iterations per invocation (lavapipe stops at 65,535).
  if (2 * (int64_t)heads * lk > 60000)
    fail("attention_probs: " + std::to_string(heads) + " heads x " + std::to_string(lk) +
         " keys exceed one invocation's loop budget");
  if (scale == 0.f) scale = (float)(1.0 / std::sqrt((double)d));
  constexpr uint32_t kWorkgroup = 64;
  Grid grid = grid_1d(g, (uint64_t)lq, kWorkgroup);
  Tensor p = g.temp({lk, lq}, DType::F32);
  AttentionProbsPush push{(uint32_t)lq, (uint32_t)lk, (uint32_t)b, scale * 1.4426950408889634f, grid.x};
  Dispatch dsp;
  dsp.kernel = "attention_probs";
  dsp.label = "attention_probs";
  dsp.spec = {kWorkgroup, (uint32_t)(d / 4), (uint32_t)heads};
  dsp.args = {in(q, 4), in(k, 4), out(p)};
  dsp.set_push(push);
  dsp.groups[0] = grid.x;
  dsp.groups[1] = grid.y;
  dsp.flops = 4.0 * (double)heads * (double)lq * (double)lk * (double)d;
  g.add(std::move(dsp));
  return p;
}

}  // namespace vksd::ops
