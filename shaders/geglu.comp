#version 450
// GEGLU of SD's FeedForward: x [R, 2D] -> y [R, D] = a * gelu(g) with a = x[:, :D], g = x[:, D:]
// (GELU with the exact erf). LANES 4 reads and writes vec4s when D % 4 == 0.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const int LANES = 1;
IN(0, X);
OUT(1, Y);
layout(push_constant) uniform P {
  uint n;      // output units
  uint width;  // D in units
  uint groups_x;
} p;

void main() {
  uint o = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
  if (o >= p.n) return;
  uint r = o / p.width, j = o % p.width;
  uint a_at = r * 2u * p.width + j;
  if (LANES == 4) {
    vec4 a = LOAD4(X, a_at), g = LOAD4(X, a_at + p.width);
    STORE4(Y, o, a * vec4(gelu(g.x), gelu(g.y), gelu(g.z), gelu(g.w)));
  } else {
    STORE(Y, o, LOAD(X, a_at) * gelu(LOAD(X, a_at + p.width)));
  }
}
