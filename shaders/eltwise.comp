#version 450
// Elementwise ops, one family: y = act(alpha * a + beta * b[bidx(i)]), with b broadcast by
// bidx(i) = (i / b_div) % b_mod (b_mod = 0: no b). Covers add, mul-free residual sums,
// bias broadcasts, scaling and the activations SD uses.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const int ACT = 0;    // 0 none, 1 SiLU, 2 GELU(erf), 3 quick-GELU
layout(constant_id = 1) const int MODE = 0;   // 0: alpha*a + beta*b, 1: a * b
IN(0, A);
IN(1, B);
OUT(2, Y);
layout(push_constant) uniform P {
  uint n;
  uint b_div;
  uint b_mod;
  float alpha;
  float beta;
  uint groups_x;  // for 2-D dispatch of very large tensors
} p;

float act(float x) {
  if (ACT == 1) return silu(x);
  if (ACT == 2) return gelu(x);
  if (ACT == 3) return quick_gelu(x);
  return x;
}

void main() {
  uint i = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
  if (i >= p.n) return;
  float a = LOAD(A, i);
  float y;
  if (p.b_mod == 0u) {
    y = p.alpha * a;
  } else {
    float b = LOAD(B, (i / p.b_div) % p.b_mod);
    y = MODE == 1 ? a * b : p.alpha * a + p.beta * b;
  }
  STORE(Y, i, act(y));
}
