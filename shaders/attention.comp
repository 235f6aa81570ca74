#version 450
// Fused multi-head attention: O = softmax(Q Kᵀ · scale) V per (batch, head), with an online
// (flash-style) softmax so that the Lq × Lk score matrix never exists in memory.
//
// Each invocation owns QPI consecutive queries of one head and walks all keys in blocks of KB:
// per block it computes the QPI × KB scores, rescales its running (max, sum, accumulator) once
// and adds p · V. Accumulation is fp32. Wide heads (the VAE's single 512-dim head) split the
// head dimension over SPLIT adjacent lanes of a subgroup: each lane holds D/SPLIT dims of the
// queries and of the output, partial dot products are summed with a shuffle-xor butterfly that
// stays inside the SPLIT-lane cluster (so it is correct for any subgroup size >= SPLIT).
//
// The key loop runs Lk / KB times; every inner loop has a constant trip count and is unrolled,
// which keeps each invocation far below lavapipe's 65,535-iteration budget at Lk >= 4096.
#extension GL_KHR_shader_subgroup_shuffle : enable
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int DV = 10;       // vec4s of the head dim held by one lane (D / 4 / SPLIT)
layout(constant_id = 2) const int SPLIT = 1;     // lanes sharing one query tile (1, 2, 4, 8)
layout(constant_id = 3) const int QPI = 4;       // queries per invocation
layout(constant_id = 4) const int KB = 8;        // keys per online-softmax block
layout(constant_id = 5) const bool CAUSAL = false;
// SG > 0 (SPLIT 1, not CAUSAL): the SG lanes of a subgroup are SG query tiles of the same head
// (the host pads the tiles per head to a multiple of SG), so they read the same keys and
// values: each lane fetches 1/SG of a block's K and V vec4s and the others get them by
// subgroupShuffle. On llvmpipe that cuts the texel fetches, the cost there, by ~SG.
layout(constant_id = 6) const int SG = 0;

IN(0, Q);   // [B, Lq, H * D] as vec4
IN(1, K);   // [B, Lk, H * D] as vec4
IN(2, V);   // [B, Lk, H * D] as vec4
OUT(3, O);  // [B, Lq, H * D] as vec4

layout(push_constant) uniform P {
  uint batch;
  uint heads;
  uint lq;
  uint lk;
  uint q_tiles;      // ceil(lq / QPI), rounded up to a multiple of SG when SG > 0
  float scale_log2;  // scale · log2(e): the softmax is evaluated with exp2
  uint groups_x;
} p;

// Masked scores: finite so that (masked - running max) never forms inf - inf.
const float kMasked = -3.0e38;
const float kNoMax = -1.0e30;

void main() {
  const uint d4 = uint(DV * SPLIT);  // vec4s per head
  uint gid = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  uint part = gid % uint(SPLIT);
  uint tile = gid / uint(SPLIT);
  uint t = tile % p.q_tiles;
  uint bh = tile / p.q_tiles;
  // Lanes past the end keep running (clamped) so that every lane of a cluster takes part in
  // the shuffles; they just never store.
  bool live = bh < p.batch * p.heads;
  bh = min(bh, p.batch * p.heads - 1u);
  uint h = bh % p.heads;
  uint b = bh / p.heads;
  uint q0 = t * uint(QPI);
  uint row_stride = p.heads * d4;  // vec4s between consecutive tokens
  uint head_off = h * d4 + part * uint(DV);

  vec4 q[QPI][DV];
  vec4 acc[QPI][DV];
  float m[QPI], l[QPI];
  [[unroll]] for (int i = 0; i < QPI; ++i) {
    uint qi = min(q0 + uint(i), p.lq - 1u);
    uint base = (b * p.lq + qi) * row_stride + head_off;
    [[unroll]] for (int d = 0; d < DV; ++d) {
      q[i][d] = LOAD4(Q, base + uint(d)) * p.scale_log2;
      acc[i][d] = vec4(0.0);
    }
    m[i] = kNoMax;
    l[i] = 0.0;
  }

  uint kend = p.lk;
  if (CAUSAL) kend = min(p.lk, q0 + uint(QPI));  // the tile's last query sees keys 0..q0+QPI-1
  uint kbase = b * p.lk * row_stride + head_off;

  // SG: this lane fetches vec4 number f = jj*SG + lane of a block's KB x DV (key, dim) grid.
  const int SGD = SG > 0 ? SG : 1;
  const int NJ = (KB * DV + SGD - 1) / SGD;
  uint f_key[NJ], f_dim[NJ];
  if (SG > 0) {
    [[unroll]] for (int jj = 0; jj < NJ; ++jj) {
      uint f = min(uint(jj * SG) + gl_SubgroupInvocationID, uint(KB * DV - 1));
      f_key[jj] = f / uint(DV);
      f_dim[jj] = f % uint(DV);
    }
  }

  for (uint j0 = 0u; j0 < kend; j0 += uint(KB)) {
    float s[QPI][KB];
    vec4 kmine[NJ], vmine[NJ];
    if (SG > 0) {
      [[unroll]] for (int jj = 0; jj < NJ; ++jj) {
        uint off = kbase + min(j0 + f_key[jj], p.lk - 1u) * row_stride + f_dim[jj];
        kmine[jj] = LOAD4(K, off);
        vmine[jj] = LOAD4(V, off);
      }
    }
    [[unroll]] for (int k = 0; k < KB; ++k) {
      uint j = min(j0 + uint(k), p.lk - 1u);
      uint base = kbase + j * row_stride;
      [[unroll]] for (int i = 0; i < QPI; ++i) s[i][k] = 0.0;
      [[unroll]] for (int d = 0; d < DV; ++d) {
        const int f = k * DV + d;
        vec4 kv = SG > 0 ? subgroupShuffle(kmine[f / SGD], uint(f % SGD)) : LOAD4(K, base + uint(d));
        [[unroll]] for (int i = 0; i < QPI; ++i) s[i][k] += dot(q[i][d], kv);
      }
    }
    if (SPLIT > 1) {
      [[unroll]] for (int i = 0; i < QPI; ++i)
        [[unroll]] for (int k = 0; k < KB; ++k)
        {
          // Written out, not looped: a shift-counted loop may stay a loop, and every one of its
          // iterations would count against lavapipe's per-invocation budget.
          if (SPLIT > 1) s[i][k] += subgroupShuffleXor(s[i][k], 1u);
          if (SPLIT > 2) s[i][k] += subgroupShuffleXor(s[i][k], 2u);
          if (SPLIT > 4) s[i][k] += subgroupShuffleXor(s[i][k], 4u);
          if (SPLIT > 8) s[i][k] += subgroupShuffleXor(s[i][k], 8u);
          if (SPLIT > 16) s[i][k] += subgroupShuffleXor(s[i][k], 16u);
        }
    }
    // Online softmax: one rescale of the running state per block.
    [[unroll]] for (int i = 0; i < QPI; ++i) {
      float mb = m[i];
      [[unroll]] for (int k = 0; k < KB; ++k) {
        uint j = j0 + uint(k);
        bool masked = j >= p.lk || (CAUSAL && j > q0 + uint(i));
        s[i][k] = masked ? kMasked : s[i][k];
        mb = max(mb, s[i][k]);
      }
      float corr = exp2(m[i] - mb);
      m[i] = mb;
      float sum = 0.0;
      [[unroll]] for (int k = 0; k < KB; ++k) {
        s[i][k] = exp2(s[i][k] - mb);
        sum += s[i][k];
      }
      l[i] = l[i] * corr + sum;
      [[unroll]] for (int d = 0; d < DV; ++d) acc[i][d] *= corr;
    }
    // d outermost: each accumulator vec4 stays in a register across the block's keys.
    [[unroll]] for (int d = 0; d < DV; ++d) {
      [[unroll]] for (int k = 0; k < KB; ++k) {
        uint j = min(j0 + uint(k), p.lk - 1u);
        const int f = k * DV + d;
        vec4 vv = SG > 0 ? subgroupShuffle(vmine[f / SGD], uint(f % SGD)) : LOAD4(V, kbase + j * row_stride + uint(d));
        [[unroll]] for (int i = 0; i < QPI; ++i) acc[i][d] += s[i][k] * vv;
      }
    }
  }

  if (!live || q0 >= p.lq) return;  // q0 >= lq: a padding tile (SG)
  [[unroll]] for (int i = 0; i < QPI; ++i) {
    uint qi = q0 + uint(i);
    if (qi >= p.lq) break;
    uint base = (b * p.lq + qi) * row_stride + head_off;
    float inv = 1.0 / l[i];
    [[unroll]] for (int d = 0; d < DV; ++d) STORE4(O, base + uint(d), acc[i][d] * inv);
  }
}
