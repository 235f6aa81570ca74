// Ops on the device's matrix unit (matrix_unit.h): the GEMM and implicit-GEMM convolution of
// shaders/matmul_coop.comp and the attention of shaders/attention_coop.comp, chosen by
// gemm(), conv2d() and attention() when the profile has a matrix unit and the operands are
// stored in fp16. Internal to the op library.
#pragma once
#include "runtime/ops/gemm.h"

namespace vksd::ops::detail {

// The same product on the device's matrix unit (matmul_coop.comp), or — with `conv` — the
// implicit-GEMM convolution whose B is the im2col matrix of the input `b` [batch, Ci, H, W]
// (a: the weight [Co, Ci*kh*kw], M = Co, N = Ho*Wo, K = Ci*kh*kw, b_batch = Ci*H*W).
struct CoopConv {
  uint32_t H = 0, W = 0, Wo = 0, kh = 1, kw = 1, stride = 1;
  int32_t pad_top = 0, pad_left = 0;
};
// Whether the matrix-unit kernel takes this product: the profile has a matrix unit, both
// operands are stored in fp16 (the kernel's tiles are fp16, so nothing is rounded), and the
// problem is not one of the small ones that take the compact variant.
bool matrix_unit_takes(const Graph& g, const Tensor& a, const Tensor& b, int64_t K, double flops, bool conv);
Tensor gemm_on_matrix_unit(const GemmDesc& d, const CoopConv* conv = nullptr);

// Attention (ops::attention's contract) on the matrix unit, or an invalid Tensor where it does
// not take it (no matrix unit, operands not fp16, a small problem, a head wider than 256).
Tensor attention_on_matrix_unit(Tensor q, Tensor k, Tensor v, int heads, bool causal, float scale);

}  // namespace vksd::ops::detail
