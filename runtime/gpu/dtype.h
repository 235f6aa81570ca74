// Element types and shapes of tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vksd {

// Storage type of a tensor in device memory. Shaders always compute in fp32; the texel-buffer
// view format converts on load/store, so one SPIR-V module serves every storage type.
enum class DType : uint8_t { F32, F16, I32 };

inline size_t dtype_size(DType t) { return t == DType::F16 ? 2 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
  }
  return "?";
}

using Shape = std::vector<int64_t>;

inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

inline std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace vksd
