// Shared conventions of vksd kernels.
//  * Tensors are bound as texel buffers: inputs as `samplerBuffer` (texelFetch), outputs as
//    `imageBuffer` without a format (imageStore). The Vulkan view's format (r32f / r16f,
//    1 or 4 lanes) converts on load/store, so every kernel serves f32 and f16 storage and
//    always computes in f32.
//  * Parameters come in push constants (<= 128 bytes), tile sizes in specialization constants.
//  * lavapipe stops an invocation's loops after 65,535 iterations in total: keep every
//    invocation's total trip count far below that (split long reductions across invocations).
#extension GL_EXT_samplerless_texture_functions : enable

#define IN(b, name) layout(binding = b) uniform samplerBuffer name
#define OUT(b, name) layout(binding = b) uniform writeonly imageBuffer name

#define LOAD(t, i) texelFetch(t, int(i)).x
#define LOAD4(t, i) texelFetch(t, int(i))
#define STORE(t, i, v) imageStore(t, int(i), vec4(v))
#define STORE4(t, i, v) imageStore(t, int(i), v)

float silu(float x) { return x / (1.0 + exp(-x)); }
float quick_gelu(float x) { return x / (1.0 + exp(-1.702 * x)); }
// erf with |error| < 1.2e-7 (W. J. Cody-style rational approximation via erfc, Numerical Recipes erfcc)
float erf_approx(float x) {
  float z = abs(x);
  float t = 1.0 / (1.0 + 0.5 * z);
  float r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
            t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0.0 ? 1.0 - r : r - 1.0;
}
float gelu(float x) { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
