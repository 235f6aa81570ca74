// Writes a safetensors file (the format runtime/model/safetensors.h reads) tensor by tensor, so
// that a multi-gigabyte checkpoint never has to be held in memory. The header is composed from
// the declared tensors first; data then follows in the same order. The file appears at its path
// only when complete (written beside it as PATH.tmp-PID, then renamed).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"

namespace vksd {

struct StOutTensor {
  std::string name;
  DType dtype = DType::F32;  // F32 or F16
  Shape shape;
};

// Fills `out` (numel floats) with the values of tensor `index`; they are stored as its dtype.
using TensorFiller = std::function<void(size_t index, std::vector<float>& out)>;

void write_safetensors(const std::string& path, const std::vector<StOutTensor>& tensors, const TensorFiller& fill,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace vksd
