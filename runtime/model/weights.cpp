#include "runtime/model/weights.h"

#include <algorithm>

#include "runtime/error.h"

namespace vksd {

static constexpr VkDeviceSize kWeightBlock = 256ull << 20;

WeightStore::WeightStore(Context& ctx, DType storage, VkDeviceSize expected_bytes)
    : storage_(storage),
      arena_(ctx, "weights", expected_bytes ? std::min(kWeightBlock, align_up(expected_bytes, kTensorAlignment)) : kWeightBlock) {
  arena_.expect_total(expected_bytes);
}

void WeightStore::add(const std::string& name, const Shape& shape, const float* data, UploadBatch* batch) {
  if (has(name)) fail("weight '" + name + "' added twice");
  DeviceTensor t = arena_.alloc(shape, storage_);
  if (batch) {
    const std::vector<uint8_t> bytes = to_storage(t.dtype, data, (size_t)t.numel());
    batch->bytes(t.buffer, t.offset, bytes.data(), bytes.size());
  } else {
    upload(arena_.context(), t, data);
  }
  tensors_.emplace(name, t);
}

void WeightStore::add_bytes(const std::string& name, const Shape& shape, const void* data, UploadBatch& batch) {
  if (has(name)) fail("weight '" + name + "' added twice");
  DeviceTensor t = arena_.alloc(shape, storage_);
  batch.bytes(t.buffer, t.offset, data, t.bytes());
  tensors_.emplace(name, t);
}

void WeightStore::replace(const std::string& name, const float* data) {
  upload(arena_.context(), get(name), data);
}

const DeviceTensor& WeightStore::get(const std::string& name, const Shape& expect) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("missing tensor '" + name + "' in the checkpoint");
  if (!expect.empty() && it->second.shape != expect)
    fail("tensor '" + name + "' has shape " + shape_str(it->second.shape) + ", expected " + shape_str(expect));
  return it->second;
}

Tensor WeightStore::bind(Graph& g, const std::string& name, const Shape& expect) const {
  return g.bind(get(name, expect), name);
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> r;
  for (auto& [k, v] : tensors_) r.push_back(k);
  return r;
}

}  // namespace vksd
