#version 450
// Normalisation family: GroupNorm (three steps) and LayerNorm, statistics in fp32.
//
// GroupNorm over x [N, C, S]: a group's C/G channels × S pixels are one contiguous run of
// M elements. A VAE group at 512×512 holds 1 M elements — far more than one invocation may loop
// over on lavapipe — so the statistics are a parallel two-level reduction:
//   MODE 0 (chunk stats): each workgroup takes a chunk of WG · E elements of one group, keeps
//          them in registers, and computes the chunk's mean and then its sum of squared
//          deviations from that mean (two passes over registers: no E[x²] − E[x]² cancellation);
//          writes (count, mean, M2).
//   MODE 1 (combine): one invocation per group merges its chunks with Chan's pairwise update
//          and writes (mean, 1/sqrt(var + eps)).
//   MODE 2 (apply): y = (x − mean) · rstd · gamma[c] + beta[c], optionally SiLU.
// MODE 3 is LayerNorm: one workgroup per row of the last dimension, two-pass in registers.
//
// Bindings are the same for every mode (unused inputs get any tensor):
//   0 X, 1 GAMMA, 2 BETA, 3 STATS (chunk stats for MODE 1, group stats for MODE 2), 4 Y.
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int MODE = 0;
layout(constant_id = 2) const int LANES = 1;   // 4: X and Y are read/written as vec4
layout(constant_id = 3) const int E = 4;       // MODE 0 / 3: units (LANES elements) per invocation
layout(constant_id = 4) const bool SILU = false;

IN(0, X);
IN(1, GAMMA);
IN(2, BETA);
IN(3, STATS);
OUT(4, Y);

layout(push_constant) uniform P {
  uint n;         // MODE 0: elements per group (M); 1: groups; 2: units of Y; 3: row width C
  uint chunks;    // MODE 0/1: chunks per group
  uint spatial;   // MODE 2: S (elements per channel)
  uint channels;  // MODE 2: C
  uint group_len; // MODE 2: M
  float eps;
  uint groups_x;
} p;

shared float partial[gl_WorkGroupSize.x];

// Sum over the workgroup (every invocation gets the result). Deterministic order.
float workgroup_sum(float v) {
  v = subgroupAdd(v);
  if (subgroupElect()) partial[gl_SubgroupID] = v;
  barrier();
  float s = 0.0;
  for (uint i = 0u; i < gl_NumSubgroups; ++i) s += partial[i];
  barrier();  // `partial` is reused by the next call
  return s;
}

vec4 load_unit(uint u) { return LANES == 4 ? LOAD4(X, u) : vec4(LOAD(X, u), 0.0, 0.0, 0.0); }
float unit_sum(vec4 v) { return v.x + v.y + v.z + v.w; }

void chunk_stats() {
  uint group = gl_WorkGroupID.y;
  uint chunk = gl_WorkGroupID.x;
  uint units = p.n / uint(LANES);  // LANES == 4 only when M % 4 == 0
  uint first = chunk * gl_WorkGroupSize.x * uint(E);
  uint base = group * units;
  vec4 v[E];
  float sum = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = first + uint(e) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    v[e] = u < units ? load_unit(base + u) : vec4(0.0);
    sum += unit_sum(v[e]);
  }
  float count = float(min(units - first, gl_WorkGroupSize.x * uint(E)) * uint(LANES));
  float mean = workgroup_sum(sum) / count;
  float m2 = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = first + uint(e) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    vec4 d = v[e] - mean;
    if (LANES == 1) d.yzw = vec3(0.0);
    m2 += u < units ? dot(d, d) : 0.0;
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
  uint group = gl_WorkGroupID.x * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
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
  uint u = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (u >= p.n) return;
  uint i = u * uint(LANES);  // first element; LANES == 4 only when S % 4 == 0 (one channel)
  uint c = (i / p.spatial) % p.channels;
  uint g = i / p.group_len;
  float mean = LOAD(STATS, g * 2u), rstd = LOAD(STATS, g * 2u + 1u);
  float a = rstd * LOAD(GAMMA, c);
  float b = LOAD(BETA, c) - mean * a;
  if (LANES == 4) {
    vec4 y = LOAD4(X, u) * a + b;
    if (SILU) y = y / (1.0 + exp(-y));
    STORE4(Y, u, y);
  } else {
    float y = LOAD(X, u) * a + b;
    if (SILU) y = silu(y);
    STORE(Y, u, y);
  }
}

void layer_norm() {
  uint row = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
  uint units = p.n / uint(LANES);
  uint base = row * units;
  vec4 v[E];
  float sum = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = uint(e) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    v[e] = u < units ? load_unit(base + u) : vec4(0.0);
    sum += unit_sum(v[e]);
  }
  float mean = workgroup_sum(sum) / float(p.n);
  float m2 = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = uint(e) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    vec4 d = v[e] - mean;
    if (LANES == 1) d.yzw = vec3(0.0);
    m2 += u < units ? dot(d, d) : 0.0;
  }
  float rstd = inversesqrt(workgroup_sum(m2) / float(p.n) + p.eps);
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = uint(e) * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (u < units) {
      if (LANES == 4) {
        STORE4(Y, base + u, (v[e] - mean) * rstd * LOAD4(GAMMA, u) + LOAD4(BETA, u));  // vec4 views
      } else {
        STORE(Y, base + u, (v[e].x - mean) * rstd * LOAD(GAMMA, u) + LOAD(BETA, u));
      }
    }
  }
}

void main() {
  if (MODE == 0) chunk_stats();
  else if (MODE == 1) combine();
  else if (MODE == 2) apply();
  else layer_norm();
}
