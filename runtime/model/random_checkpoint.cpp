#include "runtime/model/random_checkpoint.h"

#include <cmath>
#include <cstring>

#include "runtime/model/safetensors_writer.h"
#include "runtime/model/sd1_layout.h"

namespace vksd {

namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t name_seed(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

std::vector<float> random_weight(const std::string& name, const Shape& shape) {
  const size_t n = (size_t)shape_numel(shape);
  double offset = 0, amp;
  if (name.find("token_embedding") != std::string::npos) amp = std::sqrt(3.0);  // variance 1
  else if (name.find("position_embedding") != std::string::npos) amp = 0.5 * std::sqrt(3.0);
  else if (shape.size() == 1 && name.ends_with(".weight")) offset = 1, amp = 0.1;  // norm gains
  else if (name.ends_with(".bias")) amp = 0.05;
  else amp = std::sqrt(3.0 / (double)(n / (size_t)shape[0]));  // variance 1/fan_in
  std::vector<float> v(n);
  const uint64_t seed = name_seed(name);
  const float a = (float)amp, off = (float)offset;
  for (size_t i = 0; i < n; ++i) {
    const float u = (float)(int32_t)(splitmix(seed + i) >> 32) * 0x1p-31f;  // [-1, 1)
    v[i] = off + a * u;
  }
  return v;
}

void write_random_checkpoint(const ModelConfig& cfg, const std::string& path, DType storage) {
  const auto specs = sd1_layout(cfg);
  std::vector<StOutTensor> out;
  out.reserve(specs.size());
  for (const auto& s : specs) out.push_back({s.name, storage, s.shape});
  write_safetensors(path, out, [&](size_t i, std::vector<float>& v) { v = random_weight(specs[i].name, specs[i].shape); },
                    {{"vksd", "random weights (runtime/model/random_checkpoint.h), not a trained model"}});
}

}  // namespace vksd
