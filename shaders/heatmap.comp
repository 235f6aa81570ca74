#version 450
// Scalar field -> RGBA8 through a colour map (runtime/diffusion/preview.h, HeatmapPreview): per value v
//   u   = clamp((v - lo) * inv, 0, 1)                 (NaN -> 0; inv = 1 / (hi - lo) from the host)
//   rgb = TABLE[map][floor(u * 255 + 0.5)] / 255      (8-bit colours, stored as floats)
//   a   = 1, or floor((u * overlay) * 255 + 0.5) / 255 when overlay >= 0.
// Bit-exact with the CPU heatmap_texel: every operation is `precise` (no fused multiply-add), in
// the same order and in f32 (add, subtract and multiply are correctly rounded in Vulkan; the one
// division is done on the host), and the 8-bit values are chosen here, so the UNORM store of
// u8 / 255 gives back exactly u8 (see latent_rgb.comp).
#include "common.glsl"
layout(local_size_x = 64) in;
IN(0, VALUES);   // [h, w] f32 (R32_SFLOAT view)
IN(1, TABLE);    // [maps][256][3] 8-bit levels as f32
OUT(2, RGBA);    // [h, w] texels (R8G8B8A8_UNORM view)
layout(push_constant) uniform P {
  uint count;     // h * w
  uint map;       // ColorMap
  float lo;
  float inv;
  float overlay;  // < 0: opaque
} p;

void main() {
  const uint i = gl_GlobalInvocationID.x;
  if (i >= p.count) return;
  precise float d = LOAD(VALUES, i) - p.lo;
  precise float u = d * p.inv;
  u = u >= 0.0 ? u : 0.0;  // also NaN -> 0, as on the CPU
  u = min(u, 1.0);
  precise float q = u * 255.0 + 0.5;
  const uint k = (p.map * 256u + uint(q)) * 3u;
  vec4 texel;
  texel.r = LOAD(TABLE, k) / 255.0;
  texel.g = LOAD(TABLE, k + 1u) / 255.0;
  texel.b = LOAD(TABLE, k + 2u) / 255.0;
  texel.a = 1.0;
  if (p.overlay >= 0.0) {
    precise float a = u * p.overlay;
    precise float qa = a * 255.0 + 0.5;
    texel.a = float(uint(qa)) / 255.0;
  }
  STORE4(RGBA, i, texel);
}
