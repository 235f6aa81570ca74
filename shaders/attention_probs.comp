#version 450
// Cross-attention probability maps (the viewer's "where words go" panel; opt-in, see
// ops::attention_probs): for ONE batch entry b,
//   P[j, i] = (1 / HEADS) · sum_h softmax_j(q[b, i, h] · k[b, j, h] · scale)
// stored token-major, [Lk, Lq], so that one key token's map over all queries is contiguous.
// The fused attention kernel never forms these probabilities (its online softmax keeps only a
// running max and sum), so this kernel recomputes the scores from the same q and k.
//
// One invocation per query i. Pass 1 walks the keys once per head with an online max / sum;
// pass 2 walks them again and forms each key's probability per head, averaged over heads, and
// stores it. Each invocation runs 2 · HEADS · Lk loop iterations (the head loops are unrolled,
// the head dim always): 1,232 for SD 1.5's 8 heads x 77 tokens, far below lavapipe's 65,535.
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int DV = 10;    // vec4s per head (D / 4)
layout(constant_id = 2) const int HEADS = 8;

IN(0, Q);   // [B, Lq, HEADS * D] as vec4
IN(1, K);   // [B, Lk, HEADS * D] as vec4
OUT(2, P);  // [Lk, Lq] scalar

layout(push_constant) uniform Push {
  uint lq;
  uint lk;
  uint b;            // the batch entry
  float scale_log2;  // scale · log2(e): scores in base 2, as the attention kernel forms them
  uint groups_x;
} p;

float score(uint qbase, uint kbase, int h) {
  float s = 0.0;
  [[unroll]] for (int d = 0; d < DV; ++d)
    s += dot(LOAD4(Q, qbase + uint(h * DV + d)) * p.scale_log2, LOAD4(K, kbase + uint(h * DV + d)));
  return s;
}

void main() {
  const uint i = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.lq) return;
  const uint row = uint(HEADS * DV);  // vec4s per token
  const uint qbase = (p.b * p.lq + i) * row;
  const uint kbase = p.b * p.lk * row;

  float m[HEADS], inv_l[HEADS];
  [[unroll]] for (int h = 0; h < HEADS; ++h) {
    float mh = -1.0e30, lh = 0.0;
    for (uint j = 0u; j < p.lk; ++j) {
      const float s = score(qbase, kbase + j * row, h);
      const float mn = max(mh, s);
      lh = lh * exp2(mh - mn) + exp2(s - mn);
      mh = mn;
    }
    m[h] = mh;
    inv_l[h] = 1.0 / lh;
  }
  const float inv_heads = 1.0 / float(HEADS);
  for (uint j = 0u; j < p.lk; ++j) {
    float acc = 0.0;
    [[unroll]] for (int h = 0; h < HEADS; ++h) acc += exp2(score(qbase, kbase + j * row, h) - m[h]) * inv_l[h];
    STORE(P, j * p.lq + i, acc * inv_heads);
  }
}
