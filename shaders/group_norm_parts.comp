#version 450
// GroupNorm split in its statistics and its normalisation, for networks run in tiles that
// normalise with statistics merged over all tiles (ops::group_norm_stats / group_norm_apply,
// used by nn/vae_tiled.h; the fused single-op GroupNorm is norm.comp).
//
// x [N, C, S]: a group's C/G channels x S pixels are one contiguous run of M elements, and
// group k of the whole tensor (k = n * G + g) starts at k * M.
//   MODE 0 (chunk statistics): workgroup (chunk, group) reduces WG x E elements of the group
//          (E per invocation, strided by WG so neighbours read neighbours): the chunk's mean,
//          then the sum of squared deviations from it (no E[x^2] - E[x]^2 cancellation);
//          writes (count, mean, M2).
//   MODE 1 (combine): one invocation per group merges its chunks (Chan's update) and writes
//          (mean, 1/sqrt(var + eps)).
//   MODE 2 (apply): y = (x - mean) * rstd * gamma[c] + beta[c], optionally SiLU, with the
//          statistics read from STATS (any tensor in MODE 1's layout, e.g. a graph input).
// Every invocation's loops stay far below lavapipe's 65,535-iteration budget: E per invocation
// in MODE 0, the chunk count (checked <= 60,000 by the op) in MODE 1, none in MODE 2.
//
// Bindings: 0 X, 1 GAMMA, 2 BETA, 3 STATS (chunk stats in MODE 1, group stats in MODE 2), 4 Y.
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int MODE = 0;
layout(constant_id = 2) const int E = 16;
layout(constant_id = 3) const bool SILU = false;

IN(0, X);
IN(1, GAMMA);
IN(2, BETA);
IN(3, STATS);
OUT(4, Y);

layout(push_constant) uniform P {
  uint group_len;  // M
  uint chunks;     // MODE 0/1: chunks per group
  uint spatial;    // MODE 2: S
  uint channels;   // MODE 2: C
  uint n;          // MODE 1: groups of the whole tensor; MODE 2: elements
  float eps;       // MODE 1
  uint groups_x;   // MODE 2: workgroups along x of the 2-D grid
} p;

shared float partial[gl_WorkGroupSize.x];

// Sum over the workgroup (every invocation gets the same value, in a fixed order).
float workgroup_sum(float v) {
  v = subgroupAdd(v);
  if (subgroupElect()) partial[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;
  for (uint i = 0u; i < gl_NumSubgroups; ++i) s += partial[i];
  barrier();  // `partial` is reused by the next call
  return s;
}

void chunk_stats() {
  const uint chunk = gl_WorkGroupID.x, group = gl_WorkGroupID.y;
  const uint wg = gl_WorkGroupSize.x;
  const uint first = chunk * wg * uint(E);
  const uint base = group * p.group_len;
  float v[E];
  float sum = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint i = first + uint(e) * wg + gl_LocalInvocationID.x;
    v[e] = i < p.group_len ? LOAD(X, base + i) : 0.0;
    sum += v[e];
  }
  const float count = float(min(p.group_len - first, wg * uint(E)));
  const float mean = workgroup_sum(sum) / count;
  float m2 = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint i = first + uint(e) * wg + gl_LocalInvocationID.x;
    float d = v[e] - mean;
    m2 += i < p.group_len ? d * d : 0.0;
  }
  m2 = workgroup_sum(m2);
  if (gl_LocalInvocationID.x == 0u) {
    uint o = (group * p.chunks + chunk) * 3u;
    STORE(Y, o, count);
    STORE(Y, o + 1u, mean);
    STORE(Y, o + 2u, m2);
  }
}

void combine() {
  uint group = gl_GlobalInvocationID.x;
  if (group >= p.n) return;
  float count = 0.0, mean = 0.0, m2 = 0.0;
  for (uint c = 0u; c < p.chunks; ++c) {
    uint o = (group * p.chunks + c) * 3u;
    float nb = LOAD(STATS, o), mb = LOAD(STATS, o + 1u), m2b = LOAD(STATS, o + 2u);
    float n = count + nb;
    float delta = mb - mean;
    mean += delta * (nb / n);
    m2 += m2b + delta * delta * (count * nb / n);
    count = n;
  }
  STORE(Y, group * 2u, mean);
  STORE(Y, group * 2u + 1u, inversesqrt(m2 / count + p.eps));
}

void apply() {
  uint i = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (i >= p.n) return;
  uint c = (i / p.spatial) % p.channels;
  uint g = i / p.group_len;
  float a = LOAD(STATS, g * 2u + 1u) * LOAD(GAMMA, c);
  float b = LOAD(BETA, c) - LOAD(STATS, g * 2u) * a;
  float y = LOAD(X, i) * a + b;
  if (SILU) y = silu(y);
  STORE(Y, i, y);
}

void main() {
  if (MODE == 0) chunk_stats();
  else if (MODE == 1) combine();
  else apply();
}
