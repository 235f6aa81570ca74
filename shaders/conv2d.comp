#version 450
// 2-D convolution as an implicit GEMM (no im2col buffer), with a fused epilogue:
//   y[n, co, oh, ow] = sum_{ci, dy, dx} w[co, ci, dy, dx] * x[n, ci, oh*S - pt + dy, ow*S - pl + dx]
//                      (+ bias[co]) (+ r[n, co, oh, ow])
// Each invocation keeps TM output channels x TN consecutive output pixels of one row in
// registers. Per input channel and kernel row it fetches the (TN-1)*S + KW input pixels its
// outputs need once and reuses them for every tap and every output channel; padding is a
// select on precomputed row/column masks, so the inner loop has no branches.
//
// Loop budget (lavapipe stops an invocation after 65,535 loop iterations in total): the only
// runtime-length loop is over Ci; the kernel-window and tile loops have spec-constant bounds
// and are unrolled, so an invocation runs Ci iterations (2,560 at most in SD; the host
// rejects Ci > 60,000).
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(local_size_x_id = 0, local_size_y_id = 1) in;  // PX pixel blocks x CY channel blocks
layout(constant_id = 2) const int TM = 8;     // output channels per invocation
layout(constant_id = 3) const int TN = 8;     // output pixels (along a row) per invocation
layout(constant_id = 4) const int KH = 3;
layout(constant_id = 5) const int KW = 3;
layout(constant_id = 6) const int S = 1;      // stride (both directions)
layout(constant_id = 7) const int BIAS = 0;   // 1: add bias[co]
layout(constant_id = 8) const int RESID = 0;  // 1: add r[n, co, oh, ow]

IN(0, X);
IN(1, Wt);
IN(2, BIASV);
IN(3, R);
OUT(4, Y);

layout(push_constant) uniform P {
  uint Ci, H, W;
  uint Co, Ho, Wo;
  int pad_top, pad_left;
  uint row_blocks;   // ceil(Wo / TN): pixel blocks per output row
} p;

void main() {
  const int XW = (TN - 1) * S + KW;  // input columns one invocation reads per row
  uint pb = gl_WorkGroupID.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint co0 = (gl_WorkGroupID.y * gl_WorkGroupSize.y + gl_LocalInvocationID.y) * TM;
  uint n = gl_WorkGroupID.z;
  uint oh = pb / p.row_blocks;
  uint ow0 = (pb % p.row_blocks) * TN;
  if (oh >= p.Ho || co0 >= p.Co) return;

  // Input columns: clamped index plus an in-bounds flag (padding reads as zero).
  int iw0 = int(ow0) * S - p.pad_left;
  uint col[XW];
  bool col_ok[XW];
  [[unroll]] for (int j = 0; j < XW; ++j) {
    int iw = iw0 + j;
    col_ok[j] = iw >= 0 && iw < int(p.W);
    col[j] = uint(clamp(iw, 0, int(p.W) - 1));
  }
  uint row[KH];
  bool row_ok[KH];
  int ih0 = int(oh) * S - p.pad_top;
  [[unroll]] for (int dy = 0; dy < KH; ++dy) {
    int ih = ih0 + dy;
    row_ok[dy] = ih >= 0 && ih < int(p.H);
    row[dy] = uint(clamp(ih, 0, int(p.H) - 1)) * p.W;
  }
  // Weight rows of this invocation's output channels (clamped: extra channels are not stored).
  const uint KK = uint(KH * KW);
  uint wrow[TM];
  [[unroll]] for (int i = 0; i < TM; ++i) wrow[i] = min(co0 + i, p.Co - 1) * p.Ci * KK;

  float acc[TM][TN];
  [[unroll]] for (int i = 0; i < TM; ++i)
    [[unroll]] for (int j = 0; j < TN; ++j) acc[i][j] = 0.0;

  uint plane = p.H * p.W;
  uint xbase = n * p.Ci * plane;
  for (uint ci = 0; ci < p.Ci; ++ci) {
    uint xc = xbase + ci * plane;
    uint wc = ci * KK;
    [[unroll]] for (int dy = 0; dy < KH; ++dy) {
      float xs[XW];
      [[unroll]] for (int j = 0; j < XW; ++j) {
        float v = LOAD(X, xc + row[dy] + col[j]);
        xs[j] = (row_ok[dy] && col_ok[j]) ? v : 0.0;
      }
      [[unroll]] for (int i = 0; i < TM; ++i) {
        [[unroll]] for (int dx = 0; dx < KW; ++dx) {
          float w = LOAD(Wt, wrow[i] + wc + uint(dy * KW + dx));
          [[unroll]] for (int t = 0; t < TN; ++t) acc[i][t] += w * xs[t * S + dx];
        }
      }
    }
  }

  uint out_plane = p.Ho * p.Wo;
  [[unroll]] for (int i = 0; i < TM; ++i) {
    uint co = co0 + i;
    if (co >= p.Co) break;
    float bv = BIAS == 1 ? LOAD(BIASV, co) : 0.0;
    uint obase = (n * p.Co + co) * out_plane + oh * p.Wo;
    [[unroll]] for (int t = 0; t < TN; ++t) {
      uint ow = ow0 + t;
      if (ow >= p.Wo) break;
      float v = acc[i][t] + bv;
      if (RESID == 1) v += LOAD(R, obase + ow);
      STORE(Y, obase + ow, v);
    }
  }
}
