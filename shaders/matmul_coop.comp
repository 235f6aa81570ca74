#version 450
// GEMM and implicit-GEMM convolution on a GPU's matrix unit (tensor cores, WMMA, XMX):
//   C[b, m, n] = sum_k A[b, m, k] * B[b, k, n]  (+ bias[n] or bias[m])  (+ R[b, m, n])
// with fp16 operands and fp32 accumulation, the same contract and epilogue as matmul.comp.
// MODE 0 reads B as matmul.comp does (TRANS_B: [N, K] rows, else [K, N] rows). MODE 1 is a
// convolution: A is the weight [Co, Ci*KH*KW] (PyTorch's layout, flattened), n is an output
// pixel of image b, and B[k, n] is the input pixel that kernel tap k sees (zero in the
// padding) — the im2col matrix, gathered straight into shared memory, never stored.
//
// One workgroup computes a BM x BN block of C: the 128 invocations stage BM x BK of A and
// BK x BN of B in shared memory (converted to fp16; exact when the tensors are stored in
// fp16, which is when the host picks this kernel), then four subgroup blocks, 2 x 2, each
// multiply TI x TJ matrix tiles of MM x NN (inner size KK) from there. Edges read zeros, so
// any M, N, K works. The accumulators go out one tile at a time through a small per-block
// shared buffer, where the lanes add bias and residual and store.
//
// Subgroups: the workgroup's subgroup count depends on the driver's subgroup size (32 on
// NVIDIA, 32 or 64 on AMD, 8-32 on Intel), so subgroup s takes blocks s, s + gl_NumSubgroups,
// ... up to BPS blocks (the host sets BPS for the smallest count the device can give), and
// subgroups without a block only help with the staging.
//
// Three builds of this file (CMakeLists.txt): the default uses GL_NV_cooperative_matrix
// (VK_NV_cooperative_matrix), COOPMAT_KHR the cross-vendor GL_KHR_cooperative_matrix
// (VK_KHR_cooperative_matrix; built where glslc knows it), and COOPMAT_EMULATED replaces the
// matrix unit by plain per-lane loops over the same shared tiles, so that the staging, the
// convolution gather and the epilogue — everything but the matrix instructions — are tested
// on a device without a matrix unit (lavapipe).
#extension GL_EXT_control_flow_attributes : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#include "common.glsl"

#include "coopmat.glsl"

layout(local_size_x_id = 0) in;                 // WG invocations (the host: 128, or 4 subgroups)
layout(constant_id = 1) const uint MM = 16;     // matrix-unit tile: rows of A and C
layout(constant_id = 2) const uint NN = 16;     //                   columns of B and C
layout(constant_id = 3) const uint KK = 16;     //                   inner size
layout(constant_id = 4) const int TRANS_B = 1;  // MODE 0: 1 = B is [N, K]; 0 = B is [K, N]
layout(constant_id = 5) const int BIAS = 0;     // 0 none, 1 bias[n], 2 bias[m]
layout(constant_id = 6) const int RESID = 0;    // 1: add R[b, m, n]
layout(constant_id = 7) const int MODE = 0;     // 0 GEMM, 1 convolution
layout(constant_id = 8) const uint KH = 1;      // MODE 1: kernel height, width, stride
layout(constant_id = 9) const uint KW = 1;
layout(constant_id = 10) const uint STRIDE = 1;
layout(constant_id = 11) const uint BPS = 1;    // blocks per subgroup (4 / fewest subgroups, rounded up)
layout(constant_id = 12) const uint LANES = 8;  // COOPMAT_EMULATED: the subgroup size

const uint TI = 2, TJ = 2;                      // tiles per subgroup block
const uint BM = 2 * TI * MM, BN = 2 * TJ * NN, BK = 2 * KK;

IN(0, A);
IN(1, B);
IN(2, BIASV);
IN(3, R);
OUT(4, C);

layout(push_constant) uniform P {
  uint M, N, K;
  uint a_batch, a_row;  // element strides of A: batch, row (k is contiguous)
  uint b_batch, b_row;  // MODE 0: strides of B; MODE 1: b_batch = one input image (Ci*H*W)
  uint H, W, Wo;        // MODE 1: input height and width, output width
  int pad_top, pad_left;
} p;

shared float16_t sA[BM * BK];  // [BM][BK]
shared float16_t sB[BK * BN];  // [BK][BN]
shared float sC[4 * MM * NN];  // one MM x NN tile per subgroup block, on its way out

float16_t a_at(uint b, uint m, uint k) {
  return m < p.M && k < p.K ? float16_t(LOAD(A, b * p.a_batch + m * p.a_row + k)) : float16_t(0.0);
}

float16_t b_at(uint b, uint k, uint n) {
  if (k >= p.K || n >= p.N) return float16_t(0.0);
  if (MODE == 0) return float16_t(LOAD(B, b * p.b_batch + (TRANS_B == 1 ? n * p.b_row + k : k * p.b_row + n)));
  // Convolution: tap k = (ci, ky, kx) of output pixel n = (oy, ox).
  uint ci = k / (KH * KW), tap = k % (KH * KW);
  uint oy = n / p.Wo, ox = n % p.Wo;
  int iy = int(oy * STRIDE + tap / KW) - p.pad_top;
  int ix = int(ox * STRIDE + tap % KW) - p.pad_left;
  if (iy < 0 || ix < 0 || iy >= int(p.H) || ix >= int(p.W)) return float16_t(0.0);
  return float16_t(LOAD(B, b * p.b_batch + (ci * p.H + uint(iy)) * p.W + uint(ix)));
}

// Writes the MM x NN tile held in sC[blk] to C at (m0, n0), with bias and residual.
void store_tile(uint blk, uint b, uint m0, uint n0) {
  for (uint e = gl_SubgroupInvocationID; e < MM * NN; e += gl_SubgroupSize) {
    uint m = m0 + e / NN, n = n0 + e % NN;
    if (m >= p.M || n >= p.N) continue;
    uint ci = (b * p.M + m) * p.N + n;
    float v = sC[blk * MM * NN + e];
    if (BIAS == 1) v += LOAD(BIASV, n);
    if (BIAS == 2) v += LOAD(BIASV, m);
    if (RESID == 1) v += LOAD(R, ci);
    STORE(C, ci, v);
  }
}

void main() {
  const uint WG = gl_WorkGroupSize.x;
  const uint tid = gl_LocalInvocationIndex;
  const uint b = gl_WorkGroupID.z;
  const uint bm0 = gl_WorkGroupID.y * BM, bn0 = gl_WorkGroupID.x * BN;

#if defined(COOPMAT_EMULATED)
  // Lane l owns elements l, l + LANES, ... of each tile, row-major (as MAT_STORE would lay it).
  const uint EL = MM * NN / LANES;
  float acc[BPS][TI][TJ][EL];
  UNROLL for (uint s = 0; s < BPS; ++s)
    UNROLL for (uint i = 0; i < TI; ++i)
      UNROLL for (uint j = 0; j < TJ; ++j)
        UNROLL for (uint q = 0; q < EL; ++q) acc[s][i][j][q] = 0.0;
#else
  MAT_C acc[BPS][TI][TJ];
  UNROLL for (uint s = 0; s < BPS; ++s)
    UNROLL for (uint i = 0; i < TI; ++i)
      UNROLL for (uint j = 0; j < TJ; ++j) acc[s][i][j] = MAT_C(0.0);
#endif

  for (uint k0 = 0; k0 < p.K; k0 += BK) {
    // Stage: k is the fast index of A's reads (contiguous); B's fast index is whichever of
    // k and n is contiguous in memory.
    for (uint e = tid; e < BM * BK; e += WG) sA[e] = a_at(b, bm0 + e / BK, k0 + e % BK);
    if (MODE == 0 && TRANS_B == 1) {
      for (uint e = tid; e < BK * BN; e += WG) {
        uint k = e % BK, n = e / BK;
        sB[k * BN + n] = b_at(b, k0 + k, bn0 + n);
      }
    } else {
      for (uint e = tid; e < BK * BN; e += WG) sB[e] = b_at(b, k0 + e / BN, bn0 + e % BN);
    }
    barrier();
    UNROLL for (uint s = 0; s < BPS; ++s) {
      const uint blk = gl_SubgroupID + s * gl_NumSubgroups;  // uniform in the subgroup
      if (blk >= 4) break;
      const uint rm = (blk / 2) * TI * MM, rn = (blk % 2) * TJ * NN;  // block origin in the tile
      UNROLL for (uint kk = 0; kk < BK; kk += KK) {
#if defined(COOPMAT_EMULATED)
        UNROLL for (uint i = 0; i < TI; ++i)
          UNROLL for (uint j = 0; j < TJ; ++j)
            UNROLL for (uint q = 0; q < EL; ++q) {
              uint e = gl_SubgroupInvocationID + q * LANES;
              uint r = rm + i * MM + e / NN, c = rn + j * NN + e % NN;
              float sum = 0.0;
              for (uint k = 0; k < KK; ++k) sum += float(sA[r * BK + kk + k]) * float(sB[(kk + k) * BN + c]);
              acc[s][i][j][q] += sum;
            }
#else
        MAT_A ma[TI];
        MAT_B mb[TJ];
        UNROLL for (uint i = 0; i < TI; ++i) MAT_LOAD(ma[i], sA, (rm + i * MM) * BK + kk, BK);
        UNROLL for (uint j = 0; j < TJ; ++j) MAT_LOAD(mb[j], sB, kk * BN + rn + j * NN, BN);
        UNROLL for (uint i = 0; i < TI; ++i)
          UNROLL for (uint j = 0; j < TJ; ++j) acc[s][i][j] = MAT_MULADD(ma[i], mb[j], acc[s][i][j]);
#endif
      }
    }
    barrier();
  }

  // Epilogue: each block's tiles go out through its sC slot.
  UNROLL for (uint s = 0; s < BPS; ++s) {
    const uint blk = gl_SubgroupID + s * gl_NumSubgroups;
    if (blk >= 4) break;
    const uint rm = (blk / 2) * TI * MM, rn = (blk % 2) * TJ * NN;
    UNROLL for (uint i = 0; i < TI; ++i)
      UNROLL for (uint j = 0; j < TJ; ++j) {
#if defined(COOPMAT_EMULATED)
        UNROLL for (uint q = 0; q < EL; ++q) sC[blk * MM * NN + gl_SubgroupInvocationID + q * LANES] = acc[s][i][j][q];
#else
        MAT_STORE(acc[s][i][j], sC, blk * MM * NN, NN);
#endif
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        store_tile(blk, b, bm0 + rm + i * MM, bn0 + rn + j * NN);
        subgroupBarrier();  // the slot is rewritten by the next tile
      }
  }
}
