#version 450
// Normalisation family: GroupNorm (one step, or three for large groups) and LayerNorm,
// statistics in fp32, mean first and then squared deviations from it.
//
// GroupNorm over x [N, C, S]: a group's C/G channels × S pixels are one contiguous run of
// M elements. A VAE group at 512×512 holds 1 M elements — far more than one invocation may loop
// over on lavapipe — so the statistics are a parallel two-level reduction:
//   MODE 0 (chunk stats): RL lanes (or a workgroup) take a chunk of RL · E units of one
//          group, keep them in registers, and compute the chunk's mean and then its sum of squared
//          deviations from that mean (two passes over registers: no E[x²] − E[x]² cancellation);
//          writes (count, mean, M2).
//   MODE 1 (combine): one invocation per group merges its chunks with Chan's pairwise update
//          and writes (mean, 1/sqrt(var + eps)).
//   MODE 2 (apply): y = (x − mean) · rstd · gamma[c] + beta[c], optionally SiLU; one
//          workgroup row per channel plane.
// MODE 3 is LayerNorm, two-pass in registers, and MODE 4 a whole GroupNorm in one dispatch for
// groups small enough to sit in registers (the UNet's groups up to SD 1.5's 10 x 64x64 pixels):
// a row (a group) is reduced either
//   RL > 0:  by RL lanes of one subgroup with an xor-shuffle butterfly (every lane gets the
//            bitwise same sum), WG / RL rows per workgroup and no barrier at all — on llvmpipe
//            each barrier is a coroutine switch of every invocation, which dominated small rows;
//   RL == 0: by the whole workgroup through shared memory (rows too wide for RL lanes).
//
// Bindings are the same for every mode (unused inputs get any tensor):
//   0 X, 1 GAMMA, 2 BETA, 3 STATS (chunk stats for MODE 1, group stats for MODE 2), 4 Y.
#extension GL_KHR_shader_subgroup_basic : enable
#extension GL_KHR_shader_subgroup_arithmetic : enable
#extension GL_KHR_shader_subgroup_shuffle : enable
#extension GL_EXT_control_flow_attributes : enable
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int MODE = 0;
layout(constant_id = 2) const int LANES = 1;   // 4: X and Y are read/written as vec4
layout(constant_id = 3) const int E = 4;       // units (LANES elements) per invocation
layout(constant_id = 4) const bool SILU = false;
layout(constant_id = 5) const int RL = 0;      // MODE 0/3/4: lanes per row (power of 2 <= subgroup size); 0: workgroup

IN(0, X);
IN(1, GAMMA);
IN(2, BETA);
IN(3, STATS);
OUT(4, Y);

layout(push_constant) uniform P {
  uint n;         // MODE 0/4: elements per group (M); 1: groups; 3: row width C
  uint chunks;    // MODE 0/1: chunks per group
  uint spatial;   // MODE 2/4: S (elements per channel)
  uint channels;  // MODE 2/4: C
  uint group_len; // unused
  float eps;
  uint groups_x;
  uint rows;      // MODE 0/3/4: rows (chunks of all groups, layer_norm rows, image groups)
  uint groups_per_image;  // MODE 2: G
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

// Sum over the RL lanes of a row (RL > 0) or over the workgroup (RL == 0).
float row_sum(float v) {
  if (RL == 0) return workgroup_sum(v);
  if (RL >= 64) v += subgroupShuffleXor(v, 32u);
  if (RL >= 32) v += subgroupShuffleXor(v, 16u);
  if (RL >= 16) v += subgroupShuffleXor(v, 8u);
  if (RL >= 8) v += subgroupShuffleXor(v, 4u);
  if (RL >= 4) v += subgroupShuffleXor(v, 2u);
  if (RL >= 2) v += subgroupShuffleXor(v, 1u);
  return v;
}

struct RowLane { uint row, lane, stride; bool live; };

// This invocation's row and its lane within the row. Padding rows of the last workgroup are
// clamped to the last row (`live` false): they compute along, so every lane reaches the
// shuffles, and store nothing.
RowLane row_lane() {
  RowLane r;
  if (RL > 0) {
    uint rows_per_sg = gl_SubgroupSize / uint(RL);
    uint rows_per_wg = gl_WorkGroupSize.x / uint(RL);
    r.row = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * rows_per_wg + gl_SubgroupID * rows_per_sg +
            gl_SubgroupInvocationID / uint(RL);
    r.lane = gl_SubgroupInvocationID % uint(RL);
    r.stride = uint(RL);
  } else {
    r.row = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
    r.lane = gl_LocalInvocationID.x;
    r.stride = gl_WorkGroupSize.x;
  }
  r.live = r.row < p.rows;
  r.row = min(r.row, p.rows - 1u);
  return r;
}

vec4 load_unit(uint u) { return LANES == 4 ? LOAD4(X, u) : vec4(LOAD(X, u), 0.0, 0.0, 0.0); }
float unit_sum(vec4 v) { return v.x + v.y + v.z + v.w; }

// One chunk of RL · E (or WG · E) units per row of the row scheme; rows = groups × chunks.
void chunk_stats() {
  RowLane r = row_lane();
  uint group = r.row / p.chunks;
  uint chunk = r.row % p.chunks;
  uint units = p.n / uint(LANES);  // LANES == 4 only when M % 4 == 0
  uint first = chunk * r.stride * uint(E);
  uint base = group * units;
  vec4 v[E];
  float sum = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = first + uint(e) * r.stride + r.lane;
    v[e] = u < units ? load_unit(base + u) : vec4(0.0);
    sum += unit_sum(v[e]);
  }
  float count = float(min(units - first, r.stride * uint(E)) * uint(LANES));
  float mean = row_sum(sum) / count;
  float m2 = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = first + uint(e) * r.stride + r.lane;
    vec4 d = v[e] - mean;
    if (LANES == 1) d.yzw = vec3(0.0);
    m2 += u < units ? dot(d, d) : 0.0;
  }
  m2 = row_sum(m2);
  if (r.live && r.lane == 0u) {
    uint o = r.row * 3u;
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

// One (image, channel) plane per workgroup row y; E units per invocation, so the channel's
// scale and shift are computed once per invocation, not per element.
void apply() {
  uint plane = gl_WorkGroupID.y;
  uint c = plane % p.channels;
  uint g = plane / (p.channels / p.groups_per_image);
  float mean = LOAD(STATS, g * 2u), rstd = LOAD(STATS, g * 2u + 1u);
  float a = rstd * LOAD(GAMMA, c);
  float b = LOAD(BETA, c) - mean * a;
  uint units = p.spatial / uint(LANES);  // LANES == 4 only when S % 4 == 0
  uint base = plane * units;
  uint first = gl_WorkGroupID.x * gl_WorkGroupSize.x * uint(E) + gl_LocalInvocationID.x;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = first + uint(e) * gl_WorkGroupSize.x;
    if (u >= units) break;
    if (LANES == 4) {
      vec4 y = LOAD4(X, base + u) * a + b;
      if (SILU) y = y / (1.0 + exp(-y));
      STORE4(Y, base + u, y);
    } else {
      float y = LOAD(X, base + u) * a + b;
      if (SILU) y = silu(y);
      STORE(Y, base + u, y);
    }
  }
}

// Mean, then 1/sqrt(mean squared deviation + eps), of the row's E units per lane held in v.
// `units` valid units, `n` elements.
vec2 row_stats(inout vec4 v[E], RowLane r, uint units, uint n) {
  float sum = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) sum += unit_sum(v[e]);
  float mean = row_sum(sum) / float(n);
  float m2 = 0.0;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = uint(e) * r.stride + r.lane;
    vec4 d = v[e] - mean;
    if (LANES == 1) d.yzw = vec3(0.0);
    m2 += u < units ? dot(d, d) : 0.0;
  }
  return vec2(mean, inversesqrt(row_sum(m2) / float(n) + p.eps));
}

void load_row(out vec4 v[E], RowLane r, uint base, uint units) {
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = uint(e) * r.stride + r.lane;
    v[e] = u < units ? load_unit(base + u) : vec4(0.0);
  }
}

void layer_norm() {
  RowLane r = row_lane();
  uint units = p.n / uint(LANES);
  uint base = r.row * units;
  vec4 v[E];
  load_row(v, r, base, units);
  vec2 st = row_stats(v, r, units, p.n);
  if (!r.live) return;
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = uint(e) * r.stride + r.lane;
    if (u < units) {
      if (LANES == 4) {
        STORE4(Y, base + u, (v[e] - st.x) * st.y * LOAD4(GAMMA, u) + LOAD4(BETA, u));  // vec4 views
      } else {
        STORE(Y, base + u, (v[e].x - st.x) * st.y * LOAD(GAMMA, u) + LOAD(BETA, u));
      }
    }
  }
}

// MODE 4: one GroupNorm group (n = M elements) per row; LANES == 4 only when S % 4 == 0, so a
// unit never straddles two channels.
void group_norm_fused() {
  RowLane r = row_lane();
  uint units = p.n / uint(LANES);
  uint base = r.row * units;
  vec4 v[E];
  load_row(v, r, base, units);
  vec2 st = row_stats(v, r, units, p.n);
  if (!r.live) return;
  uint first_channel = r.row * (p.n / p.spatial);  // over all images; % C below
  [[unroll]] for (int e = 0; e < E; ++e) {
    uint u = uint(e) * r.stride + r.lane;
    if (u < units) {
      uint c = (first_channel + u * uint(LANES) / p.spatial) % p.channels;
      float a = st.y * LOAD(GAMMA, c), b = LOAD(BETA, c);
      vec4 y = (v[e] - st.x) * a + b;
      if (SILU) y = y / (1.0 + exp(-y));
      if (LANES == 4) STORE4(Y, base + u, y);
      else STORE(Y, base + u, y.x);
    }
  }
}

void main() {
  if (MODE == 0) chunk_stats();
  else if (MODE == 1) combine();
  else if (MODE == 2) apply();
  else if (MODE == 3) layer_norm();
  else group_norm_fused();
}
