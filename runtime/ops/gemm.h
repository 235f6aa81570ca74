// The GEMM dispatch behind linear, matmul and 1x1 convolution (matmul.comp), shared by
// matmul.cpp and conv2d.cpp. Internal to the op library.
#pragma once
#include <cstdint>
#include <string>

#include "runtime/gpu/graph.h"

namespace vksd::ops::detail {

// C[b] = A[b] · B[b] (+ bias) (+ residual), all strides in elements; a batch stride of 0
// broadcasts that operand. A: [M, K] rows of a_row elements (k contiguous). B: [N, K] rows of
// b_row (trans_b) or [K, N] rows of b_row (n contiguous). C: a fresh [batch, M, N] tensor
// viewed as `out_shape`.
struct GemmDesc {
  Tensor a, b, bias, residual;
  int64_t batch = 1, M = 0, N = 0, K = 0;
  int64_t a_batch = 0, a_row = 0, b_batch = 0, b_row = 0;
  bool trans_b = true;
  enum class BiasAlong { None, N, M } bias_along = BiasAlong::None;
  Shape out_shape;
  // The output takes this operand's dtype (the activation, not the weight); default: a.
  Tensor out_dtype_of;
  std::string label = "matmul";
};
Tensor gemm(const GemmDesc& d);

// Register-tile shape of one invocation and workgroup shape, from device properties (and the
// VKSD_GEMM_TILES=tm,tn,wx,wy override used by the benchmark to compare variants).
struct GemmTiles { uint32_t tm, tn, wx, wy; };
GemmTiles gemm_tiles(Graph& g, int64_t M, int64_t N, bool vec);

}  // namespace vksd::ops::detail
