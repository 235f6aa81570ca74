#version 450
// Sinusoidal timestep embedding as LDM computes it in float32:
//   freq_i = exp(-ln(max_period) * i / half)    (f32 product, f32 quotient, f32 exp)
//   arg    = t * freq_i                          (one f32 product)
//   y[n]   = [cos(arg_0..half-1), sin(arg_0..half-1)] (+ a zero column when dim is odd)
// t reaches 999 and freq_0 = 1, so the argument is ~1000 rad: exp, sin and cos are evaluated
// here with explicit range reduction and polynomials (Cephes-style, ~1 ulp) instead of the
// builtins, whose precision Vulkan leaves open outside [-pi, pi].
#include "common.glsl"
layout(local_size_x = 64) in;
IN(0, T);
OUT(1, Y);
layout(push_constant) uniform P {
  uint n;          // N * dim outputs
  uint dim;
  uint half_dim;
  float neg_log_period;  // f32(-ln(max_period))
} p;

// exp(x) for x in about [-80, 80]: x = k ln2 + r, |r| <= ln2/2, exp(r) by a degree-7 polynomial.
float exp_f32(float x) {
  float k = floor(x * 1.44269504088896341 + 0.5);
  float r = x - k * 0.693145751953125;  // ln2 high part: few bits, so k * it is exact
  r = r - k * 1.428606765330187045e-6;   // ln2 low part
  float z = r * r;
  float y = ((((( 1.9875691500e-4 * r + 1.3981999507e-3) * r + 8.3334519073e-3) * r + 4.1665795894e-2) * r +
              1.6666665459e-1) * r + 5.0000001201e-1) * z + r + 1.0;
  return ldexp(y, int(k));
}

// sin and cos of x (|x| up to ~8000): reduce by pi/4 with pi/4 split in three parts.
void sincos_f32(float x, out float s, out float c) {
  float ax = abs(x);
  uint j = uint(ax * 1.27323954473516);  // 4/pi
  j = (j + 1u) & ~1u;                    // even octant: r in [-pi/4, pi/4]
  float y = float(j);
  float r = ((ax - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8;
  float z = r * r;
  float sr = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  float cr = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  uint q = (j >> 1u) & 3u;  // quadrant
  float sa = q == 0u ? sr : q == 1u ? cr : q == 2u ? -sr : -cr;
  c = q == 0u ? cr : q == 1u ? -sr : q == 2u ? -cr : sr;
  s = x < 0.0 ? -sa : sa;
}

void main() {
  uint o = gl_GlobalInvocationID.x;
  if (o >= p.n) return;
  uint row = o / p.dim, i = o % p.dim;
  if (i >= 2u * p.half_dim) {
    STORE(Y, o, 0.0);
    return;
  }
  uint k = i < p.half_dim ? i : i - p.half_dim;
  float num = p.neg_log_period * float(k);
  float h = float(p.half_dim);
  float q = num / h;
  // One correction step recovers the correctly rounded f32 quotient (what torch computes) on
  // devices whose '/' is approximate. fma is not reliably fused (lavapipe), so q · h is formed
  // exactly from two 12-bit halves of q (half_dim < 4096 has at most 12 bits).
  precise float q_hi = uintBitsToFloat(floatBitsToUint(q) & 0xFFFFF000u);
  precise float q_lo = q - q_hi;
  precise float residual = (num - q_hi * h) - q_lo * h;
  q += residual / h;
  float freq = exp_f32(q);
  float arg = LOAD(T, row) * freq;
  float s, c;
  sincos_f32(arg, s, c);
  STORE(Y, o, i < p.half_dim ? c : s);
}
