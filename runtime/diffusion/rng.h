// Seeds and initial noise: a generator that reproduces PyTorch's CPU `torch.manual_seed(s);
// torch.randn(shape)` bit for bit, so that a seed means the same image in vksd as in the
// reference implementations (CompVis LDM, A1111 with its default CPU noise).
//
// What torch does (ATen, CPU, float32):
//  * the engine is MT19937 seeded with the low 32 bits of the seed (standard init_genrand);
//  * a float uniform in [0,1) is (next_u32 & (2^24-1)) * 2^-24;
//  * randn of >= 16 contiguous floats first fills the tensor with uniforms, then turns each
//    block of 16 into normals by Box-Muller (u1 = 1 - data[j], u2 = data[j+8], j < 8), and, when
//    the size is not a multiple of 16, draws 16 FRESH uniforms for the last 16 elements and
//    redoes them (so they overlap the previous block). With AVX2 (how the reference data was
//    made and how torch runs on any x86-64 CPU of the last decade) the log/sin/cos are the
//    Cephes polynomials of avx_mathfun, in float; we evaluate the same polynomials in scalar
//    float, operation for operation, which gives the same bits;
//  * randn of < 16 floats draws per element from a double Box-Muller (53-bit uniforms built
//    from two u32s) that caches its second value in the generator.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

namespace vksd {

// MT19937 as torch (and C++ std::mt19937) define it.
class Mt19937 {
 public:
  explicit Mt19937(uint64_t seed = 5489) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint32_t next_u32();

 private:
  void twist();
  uint32_t state_[624];
  int next_ = 624;
};

// torch.Generator (CPU) with the parts randn uses.
class TorchRng {
 public:
  explicit TorchRng(uint64_t seed) { manual_seed(seed); }
  void manual_seed(uint64_t seed);  // also forgets the cached Box-Muller value, as torch does

  uint32_t random() { return mt_.next_u32(); }
  uint64_t random64();                 // two u32 draws, the first one is the high half
  float uniform_float();               // [0,1), 24 bits
  double uniform_double();             // [0,1), 53 bits
  double normal_double();              // torch's at::normal_distribution<double>(0,1)

  // torch.randn(n) (any shape with n elements, contiguous, float32).
  std::vector<float> randn(int64_t n);

 private:
  Mt19937 mt_;
  std::optional<double> next_double_normal_;
};

// Convenience: torch.manual_seed(seed); torch.randn(n).
std::vector<float> torch_randn(uint64_t seed, int64_t n);

// A random seed for `--seed -1`: 32 bits from the OS entropy source.
uint64_t random_seed();

}  // namespace vksd
