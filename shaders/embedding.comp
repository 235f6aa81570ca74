#version 450
// Token embedding: y[b, l, :] = table[ids[b, l], :] + pos[l, :]. Ids outside the table are
// clamped (they are validated on the host, where the token ids come from); the table may be
// larger than maxStorageBufferRange (SD 1.5: 49408 × 768 f32 = 152 MB) since it is read
// through a texel buffer. LANES 4 moves vec4s when D % 4 == 0.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(constant_id = 0) const int LANES = 1;
layout(binding = 0) uniform isamplerBuffer IDS;
IN(1, TABLE);
IN(2, POS);
OUT(3, Y);
layout(push_constant) uniform P {
  uint n;      // output units
  uint width;  // D in units
  uint len;    // L
  uint vocab;  // V
  uint groups_x;
} p;

void main() {
  uint o = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
  if (o >= p.n) return;
  uint token = o / p.width, j = o % p.width;
  int id = texelFetch(IDS, int(token)).x;
  uint row = uint(clamp(id, 0, int(p.vocab) - 1));
  uint pos = token % p.len;
  if (LANES == 4) STORE4(Y, o, LOAD4(TABLE, row * p.width + j) + LOAD4(POS, pos * p.width + j));
  else STORE(Y, o, LOAD(TABLE, row * p.width + j) + LOAD(POS, pos * p.width + j));
}
