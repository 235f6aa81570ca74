// Attention on the device's matrix unit (shaders/attention_coop.comp): chosen by attention()
// when the profile has one (device_profile.h, matrix_unit.h).
#include <algorithm>

#include "runtime/gpu/context.h"
#include "runtime/ops/matrix_unit_ops.h"

namespace vksd::ops::detail {
namespace {

struct AttentionCoopPush {
  uint32_t heads, lq, lk, d;
  float scale_log2;
};

// attention_coop.comp's shared memory for tile t and padded head dim dp.
uint64_t attention_shared_bytes(MatrixShape t, uint64_t dp, bool emulated) {
  const uint64_t bq = 4 * t.m, kb = 2 * std::max(t.n, t.k);
  uint64_t bytes = std::max(bq, 2 * kb) * dp * 2          // queries, then K and V blocks (fp16)
                   + 4 * t.m * kb * (4 + 2)                // scores (fp32), probabilities (fp16)
                   + 4 * t.m * t.n * 4 + 3 * 4 * t.m * 4;  // an output tile, m, l, corrections
  if (emulated) bytes += bq * dp * 2;                      // the queries stay in shared memory
  return bytes;
}

}  // namespace

Tensor attention_on_matrix_unit(Tensor q, Tensor k, Tensor v, int heads, bool causal, float scale) {
  Graph& g = *q.g;
  const DeviceProfile& prof = g.profile();
  if (prof.matrix_unit == MatrixUnitApi::None) return {};
  if (q.dtype() != DType::F16 || k.dtype() != DType::F16 || v.dtype() != DType::F16) return {};
  const int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), d = q.dim(2) / heads;
  const double flops = 4.0 * (double)batch * heads * (double)lq * (double)lk * (double)d;
  if (flops < prof.compact_matmul_below_flops) return {};
  const MatrixShape t = prof.matrix_shape;
  const int64_t step = std::max(t.n, t.k);
  const int64_t dp = (d + step - 1) / step * step;
  // The output tiles of a query block live in registers: up to 256 head dims (SD's heads are
  // 40-160, SDXL's and SD 2.x's 64; the VAE's 512-wide head stays on attention.comp).
  if (dp > 256) return {};
  const bool emulated = prof.matrix_unit == MatrixUnitApi::Emulated;
  if (attention_shared_bytes(t, (uint64_t)dp, emulated) > g.device_info().max_shared_memory) return {};
  // The emulated build's per-lane loops: about 2 x DP x Lk iterations per invocation, inside
  // lavapipe's 65,535.
  if (emulated && dp * lk > 16384) return {};
  if ((uint64_t)batch * heads > 65535) return {};

  Tensor o = g.temp(q.shape(), q.dtype());
  AttentionCoopPush p{(uint32_t)heads, (uint32_t)lq, (uint32_t)lk, (uint32_t)d, scale * 1.4426950408889634f};
  Dispatch ds;
  ds.kernel = matrix_unit_kernel("attention_coop", prof.matrix_unit);
  ds.label = causal ? "attention_causal" : "attention";
  ds.spec = {prof.matrix_workgroup, t.m, t.n, t.k, (uint32_t)dp, causal ? 1u : 0u, prof.matrix_blocks_per_subgroup,
             prof.subgroup};
  ds.args = {in(q), in(k), in(v), out(o)};
  ds.set_push(p);
  ds.groups[0] = (uint32_t)((lq + 4 * t.m - 1) / (4 * t.m));  // 4 blocks of MM queries per workgroup
  ds.groups[1] = (uint32_t)(batch * heads);
  ds.flops = flops;
  g.add(std::move(ds));
  return o;
}

}  // namespace vksd::ops::detail
