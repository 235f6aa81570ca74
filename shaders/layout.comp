#version 450
// Data movement between the layouts SD's networks use. One invocation per output unit
// (LANES elements); each mode maps an output unit to its source unit:
//   MODE 0 upsample_nearest2x  [NC, H, W] -> [NC, 2H, 2W]      (d0 = W, d1 = H)
//   MODE 1 concat_channels     [N, Ca | Cb, S] from A [N,Ca,S], B [N,Cb,S]  (d0 = S, d1 = Ca, d2 = Cb)
//   MODE 2 nchw_to_nlc         [N, C, S] -> [N, S, C]           (d0 = S, d1 = C)
//   MODE 3 nlc_to_nchw         [N, S, C] -> [N, C, S]           (d0 = S, d1 = C)
//   MODE 4 copy with offset    y[i] = a[d0 + i]                 (slice_batch)
// LANES 4 binds every tensor as vec4 and runs the same index maths in vec4 units; the host
// picks it only where a mode's innermost extent (and offset) is a multiple of 4.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const int MODE = 0;
layout(constant_id = 1) const int LANES = 1;
IN(0, A);
IN(1, B);
OUT(2, Y);
layout(push_constant) uniform P {
  uint n;  // output units
  uint d0, d1, d2;
  uint groups_x;
} p;

vec4 load(bool from_b, uint i) {
  if (LANES == 4) return from_b ? LOAD4(B, i) : LOAD4(A, i);
  return vec4(from_b ? LOAD(B, i) : LOAD(A, i));
}

void main() {
  uint o = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
  if (o >= p.n) return;
  uint src = 0u;
  bool from_b = false;
  if (MODE == 0) {
    uint w2 = o % (2u * p.d0), rest = o / (2u * p.d0);
    uint h2 = rest % (2u * p.d1), nc = rest / (2u * p.d1);
    src = (nc * p.d1 + h2 / 2u) * p.d0 + w2 / 2u;
  } else if (MODE == 1) {
    uint s = o % p.d0, rest = o / p.d0;
    uint c = rest % (p.d1 + p.d2), n = rest / (p.d1 + p.d2);
    from_b = c >= p.d1;
    src = from_b ? (n * p.d2 + (c - p.d1)) * p.d0 + s : (n * p.d1 + c) * p.d0 + s;
  } else if (MODE == 2) {
    uint c = o % p.d1, rest = o / p.d1;
    uint s = rest % p.d0, n = rest / p.d0;
    src = (n * p.d1 + c) * p.d0 + s;
  } else if (MODE == 3) {
    uint s = o % p.d0, rest = o / p.d0;
    uint c = rest % p.d1, n = rest / p.d1;
    src = (n * p.d0 + s) * p.d1 + c;
  } else {
    src = p.d0 + o;
  }
  vec4 v = load(from_b, src);
  if (LANES == 4) STORE4(Y, o, v);
  else STORE(Y, o, v.x);
}
