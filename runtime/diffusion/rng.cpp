// PyTorch-compatible CPU randn. See rng.h for the algorithm; the order of every float operation
// below matters (a fused multiply-add would change the last bit), hence fp-contract=off.
#pragma GCC optimize("fp-contract=off")
#include "runtime/diffusion/rng.h"

#include <cmath>
#include <cstring>
#include <random>

namespace vksd {

// ---- MT19937 -------------------------------------------------------------------------------

void Mt19937::seed_with(uint64_t seed) {
  state_[0] = (uint32_t)(seed & 0xffffffffu);
  for (uint32_t j = 1; j < 624; ++j) state_[j] = 1812433253u * (state_[j - 1] ^ (state_[j - 1] >> 30)) + j;
  next_ = 624;
}

void Mt19937::twist() {
  constexpr uint32_t kUpper = 0x80000000u, kLower = 0x7fffffffu, kMatrixA = 0x9908b0dfu;
  for (int i = 0; i < 624; ++i) {
    uint32_t y = (state_[i] & kUpper) | (state_[(i + 1) % 624] & kLower);
    state_[i] = state_[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
  }
  next_ = 0;
}

uint32_t Mt19937::next_u32() {
  if (next_ >= 624) twist();
  uint32_t y = state_[next_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

// ---- the generator -------------------------------------------------------------------------

void TorchRng::manual_seed(uint64_t seed) {
  mt_.seed_with(seed);
  next_double_normal_.reset();
}

uint64_t TorchRng::random64() {
  uint64_t hi = mt_.next_u32();
  uint64_t lo = mt_.next_u32();
  return (hi << 32) | lo;
}

float TorchRng::uniform_float() { return (float)(random() & ((1u << 24) - 1)) * (1.0f / (float)(1u << 24)); }

double TorchRng::uniform_double() {
  return (double)(random64() & ((uint64_t(1) << 53) - 1)) * (1.0 / (double)(uint64_t(1) << 53));
}

double TorchRng::normal_double() {
  if (next_double_normal_) {
    double v = *next_double_normal_;
    next_double_normal_.reset();
    return v;
  }
  double u1 = uniform_double();
  double u2 = uniform_double();
  double r = std::sqrt(-2.0 * std::log1p(-u2));
  double theta = 2.0 * M_PI * u1;
  next_double_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

// ---- avx_mathfun's log and sincos, one lane ------------------------------------------------

static inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Natural log by Cephes' logf polynomial (valid for x > 0, which is all randn passes).
static float cephes_logf(float x) {
  const float one = 1.0f;
  x = std::fmax(x, float_of(0x00800000u));  // flush denormals to the smallest normal
  int32_t exponent = (int32_t)(bits_of(x) >> 23);
  x = float_of((bits_of(x) & ~0x7f800000u) | bits_of(0.5f));  // mantissa in [0.5, 1)
  exponent -= 0x7f;
  float e = (float)exponent;
  e = e + one;
  // if x < sqrt(1/2): e -= 1, x = x + x - 1, else x = x - 1 (written branch-free as in SIMD)
  bool small = x < (float)0.707106781186547524;
  float tmp = small ? x : 0.0f;
  x = x - one;
  e = e - (small ? one : 0.0f);
  x = x + tmp;
  float z = x * x;
  float y = (float)7.0376836292E-2;
  y = std::fmaf(y, x, (float)-1.1514610310E-1);
  y = std::fmaf(y, x, (float)1.1676998740E-1);
  y = std::fmaf(y, x, (float)-1.2420140846E-1);
  y = std::fmaf(y, x, (float)1.4249322787E-1);
  y = std::fmaf(y, x, (float)-1.6668057665E-1);
  y = std::fmaf(y, x, (float)2.0000714765E-1);
  y = std::fmaf(y, x, (float)-2.4999993993E-1);
  y = std::fmaf(y, x, (float)3.3333331174E-1);
  y = y * x;
  y = std::fmaf(y, z, e * (float)-2.12194440e-4);
  y = std::fmaf(-z, 0.5f, y);
  x = x + y;
  x = std::fmaf(e, 0.693359375f, x);
  return x;
}

// sin and cos by Cephes' sinf/cosf polynomials with the extended-precision range reduction.
static void cephes_sincosf(float x, float* s, float* c) {
  uint32_t sign_sin = bits_of(x) & 0x80000000u;
  x = std::fabs(x);
  float y = x * (float)1.27323954473516;  // 4/pi
  int32_t j = (int32_t)y;                  // truncation, as cvttps
  j = (j + 1) & ~1;
  y = (float)j;
  uint32_t swap_sign_sin = (uint32_t)(j & 4) << 29;
  bool poly_is_cos_for_sin = (j & 2) == 0;  // SIMD "poly_mask"
  x = std::fmaf(y, -0.78515625f, x);
  x = std::fmaf(y, (float)-2.4187564849853515625e-4, x);
  x = std::fmaf(y, (float)-3.77489497744594108e-8, x);
  uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
  sign_sin ^= swap_sign_sin;

  float z = x * x;
  float yc = (float)2.443315711809948E-005;
  yc = std::fmaf(yc, z, (float)-1.388731625493765E-003);
  yc = std::fmaf(yc, z, (float)4.166664568298827E-002);
  yc = yc * z;
  yc = std::fmaf(yc, z, -(z * 0.5f));
  yc = yc + 1.0f;

  float ys = (float)-1.9515295891E-4;
  ys = std::fmaf(ys, z, (float)8.3321608736E-3);
  ys = std::fmaf(ys, z, (float)-1.6666654611E-1);
  ys = ys * z;
  ys = std::fmaf(ys, x, x);

  // The SIMD select: each result is (chosen polynomial) + 0.0f, then the sign is flipped by xor.
  float ysin2 = poly_is_cos_for_sin ? ys : 0.0f;
  float ysin1 = poly_is_cos_for_sin ? 0.0f : yc;
  float rest2 = ys - ysin2;
  float rest1 = yc - ysin1;
  float sin_v = ysin1 + ysin2;
  float cos_v = rest1 + rest2;
  *s = float_of(bits_of(sin_v) ^ sign_sin);
  *c = float_of(bits_of(cos_v) ^ sign_cos);
}

// Box-Muller on one block of 16 uniforms, in place (torch's normal_fill_16_AVX2).
static void normal_fill_16(float* data) {
  const float two_pi = (float)(2.0 * M_PI);
  for (int j = 0; j < 8; ++j) {
    float u1 = 1.0f - data[j];  // [0,1) -> (0,1] for the log
    float u2 = data[j + 8];
    float radius = std::sqrt(-2.0f * cephes_logf(u1));
    float theta = two_pi * u2;
    float s, c;
    cephes_sincosf(theta, &s, &c);
    // torch computes fmadd(n, std, mean) with std = 1, mean = 0: n + 0 (only -0 becomes +0).
    data[j] = radius * c + 0.0f;
    data[j + 8] = radius * s + 0.0f;
  }
}

std::vector<float> TorchRng::randn(int64_t n) {
  std::vector<float> out((size_t)std::max<int64_t>(n, 0));
  if (n < 16) {
    for (auto& v : out) v = (float)normal_double();
    return out;
  }
  for (auto& v : out) v = uniform_float();
  for (int64_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out.data() + i);
  if (n % 16 != 0) {
    float* tail = out.data() + n - 16;
    for (int i = 0; i < 16; ++i) tail[i] = uniform_float();
    normal_fill_16(tail);
  }
  return out;
}

std::vector<float> torch_randn(uint64_t seed, int64_t n) {
  TorchRng g(seed);
  return g.randn(n);
}

uint64_t random_seed() {
  std::random_device rd;
  return rd();
}

}  // namespace vksd
