#version 450
// 2-D convolution as an implicit GEMM (no im2col buffer), with a fused epilogue:
//   y[n, co, oh, ow] = sum_{ci, dy, dx} w[co, ci, dy, dx] * x[n, ci, oh*S - pt + dy, ow*S - pl + dx]
//                      (+ bias[co]) (+ r[n, co, oh, ow])
// Each invocation keeps TM output channels x TN consecutive output pixels of one row in
// registers. Per input channel and kernel row it fetches the (TN-1)*S + KW input pixels its
// outputs need once and reuses them for every tap and every output channel; padding is a
// select on precomputed row/column masks, so the inner loop has no branches.
// Fast variants (texel fetches are the cost on llvmpipe, not the FMAs):
//   WVEC: Ci % 4 == 0. Input channels go in blocks of 4, whose 4*KH*KW weights per output
//         channel are contiguous and 16-byte aligned: KH*KW vec4 fetches instead of 4x that.
//   XVEC: W % 4 == 0 and TN % 4 == 0. The aligned middle of each input row segment is read
//         as vec4 texels; only the PL columns on the left and the rest on the right are scalar.
//   RB:   (small images, e.g. the UNet's 4x4 level at batch 1, too few pixel blocks to fill a
//         subgroup) a pixel block is RB rows x TN columns, so an invocation reuses each weight
//         for RB times more outputs; each input row is fetched once and feeds every output row
//         whose window covers it. The lanes of a subgroup then differ in output channels
//         (the workgroup's x axis), and the pixel blocks run along y.
//   SG:   (with WVEC) the SG lanes of a subgroup share their output channels (they differ in
//         pixels), so they split the block's weight fetches between them and pass the values
//         on with subgroupShuffle: SG times fewer weight fetches, which were half the cost on
//         llvmpipe. Needs subgroup size SG dividing the workgroup's x size, and every lane
//         alive to the end (out-of-range lanes compute on clamped indices and store nothing).
//
// Loop budget (lavapipe stops an invocation after 65,535 loop iterations in total): the only
// runtime-length loop is over input channels (Ci, or Ci/4 blocks with WVEC); the kernel-window
// and tile loops have spec-constant bounds and are unrolled. SD needs at most 2,560; the host
// rejects Ci > 60,000.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_KHR_shader_subgroup_shuffle : enable
#include "common.glsl"

layout(local_size_x_id = 0, local_size_y_id = 1) in;  // PX pixel blocks x CY channel blocks
layout(constant_id = 2) const int TM = 8;     // output channels per invocation
layout(constant_id = 3) const int TN = 8;     // output pixels (along a row) per invocation
layout(constant_id = 4) const int KH = 3;
layout(constant_id = 5) const int KW = 3;
layout(constant_id = 6) const int S = 1;      // stride (both directions)
layout(constant_id = 7) const int BIAS = 0;   // 1: add bias[co]
layout(constant_id = 8) const int RESID = 0;  // 1: add r[n, co, oh, ow]
layout(constant_id = 9) const int WVEC = 0;   // see above
layout(constant_id = 10) const int XVEC = 0;  // see above (needs PL + S <= KW)
layout(constant_id = 11) const int PL = 0;    // left padding (a spec constant so that the
                                              // vec4 part of a row lands at fixed registers)
layout(constant_id = 12) const int SG = 0;    // subgroup size for shared weight fetches; 0: off
layout(constant_id = 13) const int RB = 1;    // output rows per invocation (a pixel block is
                                              // RB rows x TN columns)

IN(0, X);
IN(1, Wt);
IN(2, BIASV);
IN(3, R);
OUT(4, Y);
IN(5, X4);   // X as vec4 texels (XVEC)
IN(6, W4);   // Wt as vec4 texels (WVEC)

layout(push_constant) uniform P {
  uint Ci, H, W;
  uint Co, Ho, Wo;
  int pad_top;
  uint row_blocks;   // ceil(Wo / TN): pixel blocks per output row
  uint N;            // images
} p;

void main() {
  const int XW = (TN - 1) * S + KW;  // input columns one invocation reads per row
  // Pixel blocks of all images in one range: at the UNet's small deep levels (4x4, 8x8) one
  // image alone would leave most lanes of a subgroup idle.
  // With RB > 1 the workgroup's x axis runs over channel blocks instead (llvmpipe packs
  // consecutive x invocations into one SIMD vector; a workgroup 1 wide wastes the other lanes).
  uint pb = RB > 1 ? gl_WorkGroupID.y * gl_WorkGroupSize.y + gl_LocalInvocationID.y
                   : gl_WorkGroupID.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint co0 = (RB > 1 ? gl_WorkGroupID.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x
                     : gl_WorkGroupID.y * gl_WorkGroupSize.y + gl_LocalInvocationID.y) * TM;
  uint row_groups = (p.Ho + uint(RB) - 1u) / uint(RB);
  uint image_blocks = row_groups * p.row_blocks;
  bool in_range = pb < p.N * image_blocks && co0 < p.Co;
  if (SG == 0 && !in_range) return;
  pb = min(pb, p.N * image_blocks - 1u);  // SG: inactive lanes still fetch for their subgroup
  uint n = pb / image_blocks;
  uint oh = (pb % image_blocks) / p.row_blocks * uint(RB);  // first output row of the block
  uint ow0 = (pb % p.row_blocks) * TN;

  // Input columns: clamped index plus an in-bounds flag (padding reads as zero).
  int iw0 = int(ow0) * S - PL;
  uint col[XW];
  bool col_ok[XW];
  [[unroll]] for (int j = 0; j < XW; ++j) {
    int iw = iw0 + j;
    col_ok[j] = iw >= 0 && iw < int(p.W);
    col[j] = uint(clamp(iw, 0, int(p.W) - 1));
  }
  const int RIN = (RB - 1) * S + KH;  // input rows the block's windows cover
  uint row[RIN];
  bool row_ok[RIN];
  int ih0 = int(oh) * S - p.pad_top;
  [[unroll]] for (int r = 0; r < RIN; ++r) {
    int ih = ih0 + r;
    row_ok[r] = ih >= 0 && ih < int(p.H);
    row[r] = uint(clamp(ih, 0, int(p.H) - 1)) * p.W;
  }
  // Weight rows of this invocation's output channels (clamped: extra channels are not stored).
  const uint KK = uint(KH * KW);
  uint wrow[TM];
  [[unroll]] for (int i = 0; i < TM; ++i) wrow[i] = min(co0 + i, p.Co - 1) * p.Ci * KK;

  // SG: this lane fetches vec4 number f = j*SG + lane of the block's TM*KH*KW weight texels.
  const int SGD = SG > 0 ? SG : 1;
  const int NJ = (TM * KH * KW + SGD - 1) / SGD;
  uint wlane[NJ];
  if (SG > 0) {
    uint lane = gl_LocalInvocationID.x % uint(SG);
    [[unroll]] for (int j = 0; j < NJ; ++j) {
      uint f = min(uint(j * SG) + lane, uint(TM) * KK - 1u);
      wlane[j] = wrow[f / KK] / 4u + f % KK;
    }
  }

  float acc[TM][RB * TN];
  [[unroll]] for (int i = 0; i < TM; ++i)
    [[unroll]] for (int j = 0; j < RB * TN; ++j) acc[i][j] = 0.0;

  uint plane = p.H * p.W;
  uint xbase = n * p.Ci * plane;
  const int CB = WVEC == 1 ? 4 : 1;        // input channels per loop iteration
  const int VX0 = PL, VXN = TN * S / 4;    // XVEC: xs[VX0 .. VX0 + 4*VXN) come as vec4 texels
  uint W4n = p.W / 4u;
  uint nblocks = p.Ci / uint(CB);
  for (uint cb = 0; cb < nblocks; ++cb) {
    // This block's weights for every output channel of the tile: TM x (CB*KH*KW) values.
    float wv[TM][CB * KH * KW];
    vec4 wmine[NJ];
    if (SG > 0) [[unroll]] for (int j = 0; j < NJ; ++j) wmine[j] = LOAD4(W4, wlane[j] + cb * KK);
    [[unroll]] for (int i = 0; i < TM; ++i) {
      if (SG > 0) {
        [[unroll]] for (int q = 0; q < KH * KW; ++q) {
          int f = i * KH * KW + q;
          vec4 t = subgroupShuffle(wmine[f / SG], uint(f % SG));
          wv[i][4 * q] = t.x;
          wv[i][4 * q + 1] = t.y;
          wv[i][4 * q + 2] = t.z;
          wv[i][4 * q + 3] = t.w;
        }
      } else if (WVEC == 1) {
        uint w4 = (wrow[i] + cb * 4u * KK) / 4u;
        [[unroll]] for (int q = 0; q < KH * KW; ++q) {
          vec4 t = LOAD4(W4, w4 + q);
          wv[i][4 * q] = t.x;
          wv[i][4 * q + 1] = t.y;
          wv[i][4 * q + 2] = t.z;
          wv[i][4 * q + 3] = t.w;
        }
      } else {
        [[unroll]] for (int f = 0; f < KH * KW; ++f) wv[i][f] = LOAD(Wt, wrow[i] + cb * KK + f);
      }
    }
    [[unroll]] for (int cj = 0; cj < CB; ++cj) {
      uint xc = xbase + (cb * CB + cj) * plane;
      [[unroll]] for (int r = 0; r < RIN; ++r) {
        float xs[XW];
        [[unroll]] for (int j = 0; j < XW; ++j) {
          if (XVEC == 1 && j >= VX0 && j < VX0 + 4 * VXN) continue;
          float v = LOAD(X, xc + row[r] + col[j]);
          xs[j] = (row_ok[r] && col_ok[j]) ? v : 0.0;
        }
        if (XVEC == 1) {
          uint r4 = (xc + row[r]) / 4u;
          [[unroll]] for (int q = 0; q < VXN; ++q) {
            uint c4 = ow0 * S / 4u + q;  // 16-byte aligned: ow0 is a multiple of TN
            vec4 v = LOAD4(X4, r4 + min(c4, W4n - 1u));
            v = (row_ok[r] && c4 < W4n) ? v : vec4(0.0);
            xs[VX0 + 4 * q] = v.x;
            xs[VX0 + 4 * q + 1] = v.y;
            xs[VX0 + 4 * q + 2] = v.z;
            xs[VX0 + 4 * q + 3] = v.w;
          }
        }
        // Input row r is kernel row dy = r - o*S of output row o (constant after unrolling).
        [[unroll]] for (int o = 0; o < RB; ++o) {
          const int dy = r - o * S;
          if (dy < 0 || dy >= KH) continue;
          [[unroll]] for (int i = 0; i < TM; ++i) {
            [[unroll]] for (int dx = 0; dx < KW; ++dx) {
              float w = wv[i][cj * KH * KW + dy * KW + dx];
              [[unroll]] for (int t = 0; t < TN; ++t) acc[i][o * TN + t] += w * xs[t * S + dx];
            }
          }
        }
      }
    }
  }

  if (!in_range) return;
  uint out_plane = p.Ho * p.Wo;
  [[unroll]] for (int i = 0; i < TM; ++i) {
    uint co = co0 + i;
    if (co >= p.Co) break;
    float bv = BIAS == 1 ? LOAD(BIASV, co) : 0.0;
    [[unroll]] for (int o = 0; o < RB; ++o) {
      if (oh + uint(o) >= p.Ho) break;
      uint obase = (n * p.Co + co) * out_plane + (oh + uint(o)) * p.Wo;
      [[unroll]] for (int t = 0; t < TN; ++t) {
        uint ow = ow0 + t;
        if (ow >= p.Wo) break;
        float v = acc[i][o * TN + t] + bv;
        if (RESID == 1) v += LOAD(R, obase + ow);
        STORE(Y, obase + ow, v);
      }
    }
  }
}
