// What the full-size network tests share: random weights in a real key layout, identical for the
// device and the CPU reference (tests/cpu_reference.h), random inputs, and the comparison at the
// project's bar for network parity (fp32 relative L2 <= 1e-4 per tensor).
#pragma once
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/gpu/context.h"
#include "runtime/gpu/dtype.h"
#include "runtime/model/random_checkpoint.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "tests/cpu_reference.h"
#include "tests/test_util.h"

namespace vksd::test::full {

inline constexpr double kTol = 1e-4;

inline uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// fp16 rounding (nearest even) of a float in fp16's normal range by clearing the low 13
// mantissa bits; values below it take the exact (slower) path.
inline float round_to_f16(float x) {
  if (std::fabs(x) < 0x1p-14f) return f16_to_f32(f32_to_f16(x));
  uint32_t b;
  std::memcpy(&b, &x, 4);
  b += 0xFFFu + ((b >> 13) & 1u);
  b &= ~0x1FFFu;
  std::memcpy(&x, &b, 4);
  return x;
}

// Random full-size weights in the real key layout (runtime/model/random_checkpoint.h), identical
// for the device and the reference.
class RandomWeights {
 public:
  RandomWeights(const std::vector<TensorSpec>& specs, DType storage) : storage_(storage) {
    for (auto& s : specs) shapes_[s.name] = s.shape;
  }
  std::vector<float> operator()(const std::string& name) const {
    auto it = shapes_.find(name);
    if (it == shapes_.end()) throw std::runtime_error("RandomWeights: no tensor " + name);
    std::vector<float> v = random_weight(name, it->second);
    if (storage_ == DType::F16)
      for (float& x : v) x = round_to_f16(x);
    return v;
  }
  // Upload every tensor whose name starts with `prefix`, one at a time (host memory stays small).
  std::unique_ptr<WeightStore> upload(Context& ctx, const std::string& prefix) const {
    auto ws = std::make_unique<WeightStore>(ctx, storage_);
    for (auto& [name, shape] : shapes_)
      if (name.rfind(prefix, 0) == 0) ws->add(name, shape, (*this)(name).data());
    return ws;
  }

 private:
  DType storage_;
  std::map<std::string, Shape> shapes_;
};

inline std::vector<float> randu(size_t n, uint64_t seed, double amp) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = (float)(amp * ((double)(splitmix(seed * 0x9E37ull + i) >> 11) * (2.0 / 9007199254740992.0) - 1.0));
  return v;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline void check_close(const std::string& what, const std::vector<float>& got, const cpuref::Vec& ref, double tol = kTol) {
  REQUIRE(got.size() == ref.size());
  double e = test::rel_l2(got, ref);
  MESSAGE(what << ": rel L2 " << e);
  CHECK(std::isfinite(e));
  CHECK(e <= tol);
}

inline std::string mib(VkDeviceSize b) { return std::to_string((b + (1 << 19)) >> 20) + " MiB"; }

}  // namespace vksd::test::full
