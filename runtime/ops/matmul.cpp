// linear and batched matmul: thin shape logic over one GEMM kernel (matmul.comp).
#include <cstdlib>
#include <cstdio>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"
#include "runtime/ops/gemm.h"
#include "runtime/ops/matrix_unit_ops.h"

namespace vksd::ops {
namespace detail {

GemmTiles gemm_tiles(Graph& g, int64_t M, int64_t N, bool vec) {
  const DeviceProfile& prof = g.profile();
  const auto& f = prof.gemm_tiles;  // the benchmark's forced tiles
  if (f[0] && (!vec || f[1] % 4 == 0)) return GemmTiles{f[0], f[1], f[2], f[3]};
  GemmTiles t;
  if (prof.cpu) {
    // llvmpipe: one invocation per SIMD lane, no benefit from sharing; big register tiles
    // amortise the per-lane texel fetches (spilled accumulators are cheaper than fetches).
    // Measured over the SD shapes: 32x8 is the most even; 32x16 wins at 1024^3 but loses
    // badly when N is small (1x1 conv at 8x8). A workgroup is two subgroups.
    t = {32, 8, prof.subgroup ? prof.subgroup : 8, 2};
    // Small problems: smaller tiles, so that both cores get work and edges waste less.
    while (t.tm > 8 && (int64_t)t.tm * 2 > M) t.tm /= 2;
    while (t.tn > 4 && (int64_t)t.tn * 2 > N) t.tn /= 2;
  } else {
    // GPUs: smaller per-thread tiles, wider workgroups (a later variant may add shared memory).
    t = {4, 4, 16, 16};
  }
  // Don't spread tiny problems over idle lanes.
  while (t.wy > 1 && (int64_t)t.tm * t.wy / 2 >= M) t.wy /= 2;
  while (t.wx > 1 && (int64_t)t.tn * t.wx / 2 >= N) t.wx /= 2;
  return t;
}

namespace {
struct GemmPush {
  uint32_t M, N, K, a_batch, a_row, b_batch, b_row;
};
}  // namespace

Tensor gemm(const GemmDesc& d) {
  Graph& g = *d.a.g;
  if (d.K <= 0 || d.M <= 0 || d.N <= 0 || d.batch <= 0)
    fail(std::string(d.label) + ": empty problem M=" + std::to_string(d.M) + " N=" + std::to_string(d.N) +
         " K=" + std::to_string(d.K));
  // The K loop runs K/4 iterations per invocation: stay far below lavapipe's 65,535 budget.
  if (d.K >= 4 * 60000)
    fail(std::string(d.label) + ": K=" + std::to_string(d.K) + " is too long for one invocation's loop budget");
  const double flops = 2.0 * (double)d.batch * (double)d.M * (double)d.N * (double)d.K;
  if (matrix_unit_takes(g, d.a, d.b, d.K, flops, false)) return gemm_on_matrix_unit(d);
  Tensor c = g.temp({d.batch, d.M, d.N}, (d.out_dtype_of.valid() ? d.out_dtype_of : d.a).dtype());
  // 4-lane views when every row and batch start is a multiple of 4 texels.
  bool vec = d.K % 4 == 0 && d.a_row % 4 == 0 && d.a_batch % 4 == 0 && d.b_row % 4 == 0 && d.b_batch % 4 == 0 &&
             (d.trans_b || d.N % 4 == 0) && d.a.numel() % 4 == 0 && d.b.numel() % 4 == 0;
  const DeviceProfile& prof = g.profile();
  // Small problems: one compact tile (device_profile.h), the same for every such matmul with
  // the same layout and epilogue, so a small network compiles few, short pipelines.
  const bool compact = flops < prof.compact_matmul_below_flops && !prof.gemm_tiles[0];
  GemmTiles t = compact ? GemmTiles{8, 4, 8, 2} : gemm_tiles(g, d.M, d.N, vec);
  GemmPush p{(uint32_t)d.M, (uint32_t)d.N, (uint32_t)d.K, (uint32_t)d.a_batch, (uint32_t)d.a_row,
             (uint32_t)d.b_batch, (uint32_t)d.b_row};
  Dispatch ds;
  ds.kernel = "matmul";
  ds.label = d.label;
  uint32_t bias_mode = d.bias_along == GemmDesc::BiasAlong::N ? 1 : d.bias_along == GemmDesc::BiasAlong::M ? 2 : 0;
  // Subgroup-shared A fetches (the lanes of a subgroup are neighbouring column tiles of the
  // same rows). Enabled where measured: llvmpipe (subgroup size 8, workgroup rows of 8).
  uint32_t sg = 0;
  if (vec && !compact && prof.gemm_shared_a && t.wx % prof.subgroup == 0) sg = prof.subgroup;
  ds.spec = {t.wx, t.wy, t.tm, t.tn, d.trans_b ? 1u : 0u, vec ? 1u : 0u, bias_mode, d.residual.valid() ? 1u : 0u, sg};
  int lanes = vec ? 4 : 1;
  ds.args = {in(d.a, lanes), in(d.b, lanes), in(bias_mode ? d.bias : d.a), in(d.residual.valid() ? d.residual : d.a),
             out(c)};
  ds.set_push(p);
  uint64_t gx = (d.N + (int64_t)t.tn * t.wx - 1) / ((int64_t)t.tn * t.wx);
  uint64_t gy = (d.M + (int64_t)t.tm * t.wy - 1) / ((int64_t)t.tm * t.wy);
  ds.groups[0] = (uint32_t)gx;
  ds.groups[1] = (uint32_t)gy;
  ds.groups[2] = (uint32_t)d.batch;
  ds.flops = flops;
  g.add(std::move(ds));
  return d.out_shape.empty() ? c : g.view(c, d.out_shape);
}

}  // namespace detail

static void check_2d_plus(const char* op, const char* what, Tensor t, int min_rank) {
  if (!t.valid()) fail(std::string(op) + ": " + what + " is missing");
  if (t.rank() < min_rank)
    fail(std::string(op) + ": " + what + " " + shape_str(t.shape()) + " needs rank >= " + std::to_string(min_rank));
}

Tensor linear(Tensor x, Tensor w, Tensor b, Tensor residual) {
  check_2d_plus("linear", "input", x, 1);
  check_2d_plus("linear", "weight", w, 2);
  if (w.rank() != 2) fail("linear: weight " + shape_str(w.shape()) + " must be [out, in]");
  if (x.g != w.g) fail("linear: input and weight belong to different graphs");
  int64_t K = x.dim(-1), N = w.dim(0);
  if (w.dim(1) != K)
    fail("linear: input " + shape_str(x.shape()) + " has " + std::to_string(K) + " features but weight " +
         shape_str(w.shape()) + " expects " + std::to_string(w.dim(1)));
  if (b.valid() && b.numel() != N)
    fail("linear: bias " + shape_str(b.shape()) + " does not match " + std::to_string(N) + " outputs");
  Shape out = x.shape();
  out.back() = N;
  if (residual.valid() && residual.numel() != shape_numel(out))
    fail("linear: residual " + shape_str(residual.shape()) + " does not match output " + shape_str(out));
  detail::GemmDesc d;
  d.a = x;
  d.b = w;
  d.bias = b;
  d.residual = residual;
  d.M = x.numel() / K;
  d.N = N;
  d.K = K;
  d.a_row = K;
  d.b_row = K;
  d.trans_b = true;
  d.bias_along = b.valid() ? detail::GemmDesc::BiasAlong::N : detail::GemmDesc::BiasAlong::None;
  d.out_shape = out;
  d.label = "linear";
  return detail::gemm(d);
}

Tensor linear(Tensor x, Tensor w, Tensor b) { return linear(x, w, b, Tensor{}); }

Tensor matmul(Tensor a, Tensor b, bool trans_b) {
  check_2d_plus("matmul", "a", a, 3);
  check_2d_plus("matmul", "b", b, 3);
  if (a.rank() != 3 || b.rank() != 3)
    fail("matmul: expects [B, M, K] and [B, K, N] tensors, got " + shape_str(a.shape()) + " and " + shape_str(b.shape()));
  if (a.g != b.g) fail("matmul: operands belong to different graphs");
  int64_t B = a.dim(0), M = a.dim(1), K = a.dim(2);
  int64_t bk = trans_b ? b.dim(2) : b.dim(1), N = trans_b ? b.dim(1) : b.dim(2);
  if (b.dim(0) != B && b.dim(0) != 1)
    fail("matmul: batch " + std::to_string(B) + " of " + shape_str(a.shape()) + " does not match " + shape_str(b.shape()));
  if (bk != K)
    fail("matmul: inner dimensions differ: " + shape_str(a.shape()) + (trans_b ? " · " : " x ") +
         shape_str(b.shape()) + (trans_b ? "ᵀ" : ""));
  detail::GemmDesc d;
  d.a = a;
  d.b = b;
  d.batch = B;
  d.M = M;
  d.N = N;
  d.K = K;
  d.a_batch = M * K;
  d.a_row = K;
  d.b_batch = b.dim(0) == 1 ? 0 : N * K;
  d.b_row = trans_b ? K : N;
  d.trans_b = trans_b;
  d.label = trans_b ? "matmul_nt" : "matmul_nn";
  return detail::gemm(d);
}

}  // namespace vksd::ops
