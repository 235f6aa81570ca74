#version 450
// Latent -> RGBA8 preview (runtime/diffusion/preview.h): per latent pixel
//   v_c = bias_c + sum_l M[c][l] * (scale * latent[l])      (RGB in about [-1, 1])
//   u8  = floor(clamp((v + 1) / 2, 0, 1) * 255 + 0.5)        (tensor_to_image's rule), alpha 255.
// Bit-exact with the CPU latent_preview (runtime/diffusion/pipeline.cpp): every operation is `precise`
// (no fused multiply-add), in the same order and in f32, and the 8-bit value is computed here
// rather than left to the UNORM store: a float -> unorm conversion only promises one of the two
// nearest integers, so tie-breaking could differ from the CPU's round-half-up. u8 / 255 stored
// to a UNORM texel converts back to exactly u8 (|u8/255 * 255 - u8| is far below half a level).
#include "common.glsl"
layout(local_size_x = 64) in;
IN(0, LATENT);   // [C, h, w] f32 (R32_SFLOAT view)
OUT(1, RGBA);    // [h, w] texels (R8G8B8A8_UNORM view)
layout(push_constant) uniform P {
  uint channels;  // C <= 4
  uint height;
  uint width;
  float scale;
  float m[12];    // m[c * 4 + l]: output channel c (R, G, B), latent channel l
  float bias[3];
} p;

void main() {
  const uint plane = p.height * p.width;
  const uint i = gl_GlobalInvocationID.x;
  if (i >= plane) return;
  vec4 texel = vec4(0.0, 0.0, 0.0, 1.0);
  for (int c = 0; c < 3; ++c) {
    precise float v = p.bias[c];
    for (uint l = 0u; l < p.channels; ++l) {
      precise float x = p.scale * LOAD(LATENT, l * plane + i);
      v = v + p.m[c * 4 + int(l)] * x;
    }
    precise float u = (v + 1.0) * 0.5;  // == (v + 1) / 2 exactly
    u = u >= 0.0 ? u : 0.0;             // also NaN -> 0, as on the CPU
    u = min(u, 1.0);
    precise float q = u * 255.0 + 0.5;
    texel[c] = float(uint(q)) / 255.0;
  }
  STORE4(RGBA, i, texel);
}
