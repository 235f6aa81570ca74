// GEMMs and convolutions on the device's matrix unit (shaders/matmul_coop.comp): chosen by
// gemm() and conv2d() when the profile has one (device_profile.h, matrix_unit.h).
#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/fault_inject.h"
#include "runtime/ops/matrix_unit_ops.h"

namespace vksd::ops::detail {
namespace {

struct CoopPush {
  uint32_t M, N, K, a_batch, a_row, b_batch, b_row;
  uint32_t H, W, Wo;
  int32_t pad_top, pad_left;
};

}  // namespace

bool matrix_unit_takes(const Graph& g, const Tensor& a, const Tensor& b, int64_t K, double flops, bool conv) {
  const DeviceProfile& prof = g.profile();
  if (prof.matrix_unit == MatrixUnitApi::None) return false;
  if (a.dtype() != DType::F16 || b.dtype() != DType::F16) return false;
  if (flops < (conv ? prof.compact_conv_below_flops : prof.compact_matmul_below_flops)) return false;
  // The emulated build loops per lane over whole tiles, about 1,100 iterations per K step of
  // 16: on lavapipe (65,535 loop iterations per invocation) it stays inside up to K = 512.
  if (prof.matrix_unit == MatrixUnitApi::Emulated && K > 512) return false;
  return true;
}

Tensor gemm_on_matrix_unit(const GemmDesc& d, const CoopConv* conv) {
  Graph& g = *d.a.g;
  const DeviceProfile& prof = g.profile();
  const MatrixShape t = prof.matrix_shape;
  Tensor c = g.temp({d.batch, d.M, d.N}, (d.out_dtype_of.valid() ? d.out_dtype_of : d.a).dtype());
  CoopPush p{(uint32_t)d.M, (uint32_t)d.N, (uint32_t)d.K, (uint32_t)d.a_batch, (uint32_t)d.a_row,
             (uint32_t)d.b_batch, (uint32_t)d.b_row, 0, 0, 0, 0, 0};
  if (injected_matrix_unit_fault()) p.K -= 1;  // VKSD_TEST_FAULT=matrix_unit: a broken product
  if (conv) p.H = conv->H, p.W = conv->W, p.Wo = conv->Wo, p.pad_top = conv->pad_top, p.pad_left = conv->pad_left;
  const uint32_t bias_mode = d.bias_along == GemmDesc::BiasAlong::N ? 1 : d.bias_along == GemmDesc::BiasAlong::M ? 2 : 0;
  Dispatch ds;
  ds.kernel = matrix_unit_kernel("matmul_coop", prof.matrix_unit);
  ds.label = d.label;
  ds.spec = {prof.matrix_workgroup, t.m, t.n, t.k, d.trans_b ? 1u : 0u, bias_mode, d.residual.valid() ? 1u : 0u,
             conv ? 1u : 0u, conv ? conv->kh : 1u, conv ? conv->kw : 1u, conv ? conv->stride : 1u,
             prof.matrix_blocks_per_subgroup, prof.subgroup};
  ds.args = {in(d.a), in(d.b), in(bias_mode ? d.bias : d.a), in(d.residual.valid() ? d.residual : d.a), out(c)};
  ds.set_push(p);
  // A workgroup computes a (4 MM) x (4 NN) block of C (see matmul_coop.comp).
  ds.groups[0] = (uint32_t)((d.N + 4 * t.n - 1) / (4 * t.n));
  ds.groups[1] = (uint32_t)((d.M + 4 * t.m - 1) / (4 * t.m));
  ds.groups[2] = (uint32_t)d.batch;
  ds.flops = 2.0 * (double)d.batch * (double)d.M * (double)d.N * (double)d.K;
  g.add(std::move(ds));
  return d.out_shape.empty() ? c : g.view(c, d.out_shape);
}

}  // namespace vksd::ops::detail
