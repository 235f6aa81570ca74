#version 450
// Batched matrix product with a fused epilogue, one family:
//   C[b, m, n] = sum_k A[b, m, k] * B[b, k, n]  (+ bias[n] or bias[m])  (+ R[b, m, n])
// A is row-major with k contiguous. B is either [N, K] (TRANS_B = 1, k contiguous: linear
// weights, q·kᵀ) or [K, N] (TRANS_B = 0, n contiguous: p·v, 1x1 convolution over NCHW pixels).
// A batch stride of 0 broadcasts one operand (linear weights, conv weights).
//
// Each invocation keeps a TM x TN tile of C in registers and streams K through it; nothing is
// shared between invocations. On llvmpipe that beats shared-memory tiling (a barrier is a
// coroutine switch there) and the texel-buffer fetches are the cheap loads. With VEC = 1 all
// operands are bound as 4-lane views: A and a trans B are read 4 k at a time, a plain B 4 n at
// a time, which quarters the number of fetches.
// With SG > 0 (VEC only) the lanes of a subgroup, which share their rows of A (they differ in
// columns), split the A fetches between them and pass the values on with subgroupShuffle:
// SG times fewer A fetches. Needs subgroup size SG dividing WX and every lane alive to the end.
//
// Loop budget (lavapipe stops an invocation after 65,535 loop iterations in total): the only
// runtime-length loop is over K in steps of 4, so an invocation runs about K/4 iterations;
// the tile loops have spec-constant bounds and are unrolled. The host rejects K >= 4 * 60,000.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_shader_subgroup_shuffle : enable
#include "common.glsl"

layout(local_size_x_id = 0, local_size_y_id = 1) in;  // WX x WY invocations
layout(constant_id = 2) const int TM = 8;       // rows of C per invocation
layout(constant_id = 3) const int TN = 8;       // columns of C per invocation (multiple of 4 when VEC)
layout(constant_id = 4) const int TRANS_B = 1;  // 1: B is [N, K]; 0: B is [K, N]
layout(constant_id = 5) const int VEC = 0;      // 1: 4-lane views (K % 4 == 0, and N % 4 == 0 unless TRANS_B)
layout(constant_id = 6) const int BIAS = 0;     // 0 none, 1 bias[n], 2 bias[m]
layout(constant_id = 7) const int RESID = 0;    // 1: add R[b, m, n]
layout(constant_id = 8) const int SG = 0;       // subgroup size for shared A fetches; 0: off

IN(0, A);
IN(1, B);
IN(2, BIASV);
IN(3, R);
OUT(4, C);

layout(push_constant) uniform P {
  uint M, N, K;
  uint a_batch, a_row;   // element strides of A: batch, row (k is contiguous)
  uint b_batch, b_row;   // element strides of B: batch, row (row = n when TRANS_B else k)
} p;

void main() {
  const uint WX = gl_WorkGroupSize.x, WY = gl_WorkGroupSize.y;
  uint n0 = (gl_WorkGroupID.x * WX + gl_LocalInvocationID.x) * TN;
  uint m0 = (gl_WorkGroupID.y * WY + gl_LocalInvocationID.y) * TM;
  uint b = gl_WorkGroupID.z;
  bool in_range = n0 < p.N && m0 < p.M;
  if (SG == 0 && !in_range) return;
  n0 = min(n0, p.N - 1u);  // SG: out-of-range lanes still fetch for their subgroup
  m0 = min(m0, p.M - 1u);

  // Rows and columns past the edge read a clamped (valid) row/column; their results are
  // simply not stored. That keeps the K loop free of bounds checks.
  uint a_base[TM];
  [[unroll]] for (int i = 0; i < TM; ++i) a_base[i] = b * p.a_batch + min(m0 + i, p.M - 1) * p.a_row;

  float acc[TM][TN];
  [[unroll]] for (int i = 0; i < TM; ++i)
    [[unroll]] for (int j = 0; j < TN; ++j) acc[i][j] = 0.0;

  // SG: this lane fetches A rows j*SG + lane of the tile.
  const int SGD = SG > 0 ? SG : 1;
  const int NJ = (TM + SGD - 1) / SGD;
  uint a_lane[NJ];
  if (SG > 0) {
    uint lane = gl_LocalInvocationID.x % uint(SG);
    [[unroll]] for (int j = 0; j < NJ; ++j)
      a_lane[j] = (b * p.a_batch + min(m0 + min(uint(j * SG) + lane, uint(TM - 1)), p.M - 1) * p.a_row) / 4u;
  }

  if (VEC == 1) {
    uint k4n = p.K / 4u;
    if (TRANS_B == 1) {
      uint b_base[TN];
      [[unroll]] for (int j = 0; j < TN; ++j) b_base[j] = (b * p.b_batch + min(n0 + j, p.N - 1) * p.b_row) / 4u;
      [[unroll]] for (int i = 0; i < TM; ++i) a_base[i] /= 4u;
      for (uint k4 = 0; k4 < k4n; ++k4) {
        vec4 bv[TN];
        [[unroll]] for (int j = 0; j < TN; ++j) bv[j] = LOAD4(B, b_base[j] + k4);
        vec4 amine[NJ];
        if (SG > 0) [[unroll]] for (int j = 0; j < NJ; ++j) amine[j] = LOAD4(A, a_lane[j] + k4);
        [[unroll]] for (int i = 0; i < TM; ++i) {
          vec4 av = SG > 0 ? subgroupShuffle(amine[i / SGD], uint(i % SGD)) : LOAD4(A, a_base[i] + k4);
          [[unroll]] for (int j = 0; j < TN; ++j) acc[i][j] += dot(av, bv[j]);
        }
      }
    } else {
      // B[k, n0 .. n0+TN): TN/4 texels per k. Columns past N read the last valid texel.
      const int TN4 = TN / 4;
      uint bcol[TN4];
      uint last4 = (p.N - 1u) / 4u;
      [[unroll]] for (int j = 0; j < TN4; ++j) bcol[j] = min(n0 / 4u + j, last4);
      uint b_off = b * p.b_batch / 4u;
      uint b_row4 = p.b_row / 4u;
      [[unroll]] for (int i = 0; i < TM; ++i) a_base[i] /= 4u;
      for (uint k4 = 0; k4 < k4n; ++k4) {
        vec4 bv[4][TN4];
        [[unroll]] for (int kk = 0; kk < 4; ++kk)
          [[unroll]] for (int j = 0; j < TN4; ++j) bv[kk][j] = LOAD4(B, b_off + (k4 * 4u + kk) * b_row4 + bcol[j]);
        vec4 amine[NJ];
        if (SG > 0) [[unroll]] for (int j = 0; j < NJ; ++j) amine[j] = LOAD4(A, a_lane[j] + k4);
        [[unroll]] for (int i = 0; i < TM; ++i) {
          vec4 av = SG > 0 ? subgroupShuffle(amine[i / SGD], uint(i % SGD)) : LOAD4(A, a_base[i] + k4);
          [[unroll]] for (int j = 0; j < TN4; ++j) {
            vec4 s = av.x * bv[0][j] + av.y * bv[1][j] + av.z * bv[2][j] + av.w * bv[3][j];
            acc[i][4 * j + 0] += s.x;
            acc[i][4 * j + 1] += s.y;
            acc[i][4 * j + 2] += s.z;
            acc[i][4 * j + 3] += s.w;
          }
        }
      }
    }
  } else {
    // Scalar fallback for shapes that are not multiples of 4. K is walked 4 at a time where
    // possible so the loop budget is the same as the vector path.
    uint b_base[TN];
    [[unroll]] for (int j = 0; j < TN; ++j) {
      uint n = min(n0 + j, p.N - 1);
      b_base[j] = b * p.b_batch + (TRANS_B == 1 ? n * p.b_row : n);
    }
    uint kstep = TRANS_B == 1 ? 1u : p.b_row;
    uint k4n = p.K / 4u;
    for (uint k4 = 0; k4 < k4n; ++k4) {
      [[unroll]] for (uint kk = 0; kk < 4u; ++kk) {
        uint k = k4 * 4u + kk;
        float bv[TN];
        [[unroll]] for (int j = 0; j < TN; ++j) bv[j] = LOAD(B, b_base[j] + k * kstep);
        [[unroll]] for (int i = 0; i < TM; ++i) {
          float av = LOAD(A, a_base[i] + k);
          [[unroll]] for (int j = 0; j < TN; ++j) acc[i][j] += av * bv[j];
        }
      }
    }
    for (uint k = k4n * 4u; k < p.K; ++k) {
      float bv[TN];
      [[unroll]] for (int j = 0; j < TN; ++j) bv[j] = LOAD(B, b_base[j] + k * kstep);
      [[unroll]] for (int i = 0; i < TM; ++i) {
        float av = LOAD(A, a_base[i] + k);
        [[unroll]] for (int j = 0; j < TN; ++j) acc[i][j] += av * bv[j];
      }
    }
  }

  // Epilogue: bias, residual, store (only the in-range part of the tile).
  if (!in_range) return;
  uint c_batch = b * p.M * p.N;
  [[unroll]] for (int i = 0; i < TM; ++i) {
    uint m = m0 + i;
    if (m >= p.M) break;
    float bm = BIAS == 2 ? LOAD(BIASV, m) : 0.0;
    [[unroll]] for (int j = 0; j < TN; ++j) {
      uint n = n0 + j;
      if (n >= p.N) break;
      uint ci = c_batch + m * p.N + n;
      float v = acc[i][j] + bm;
      if (BIAS == 1) v += LOAD(BIASV, n);
      if (RESID == 1) v += LOAD(R, ci);
      STORE(C, ci, v);
    }
  }
}
