// WeightStore: a checkpoint's tensors resident on the device, looked up by their name in the
// ORIGINAL single-file SD 1.x key layout (model.diffusion_model.*, first_stage_model.*,
// cond_stage_model.transformer.text_model.*) whatever format they were loaded from.
// Weights live in their own Arena, apart from activations and staging.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "runtime/gpu/graph.h"
#include "runtime/gpu/memory.h"

namespace vksd {

class WeightStore {
 public:
  // `storage`: the dtype weights are kept in on the device (F16 halves memory; F32 for parity).
  // `expected_bytes`: what the tensors will take (0 = unknown): the arena's blocks are sized
  // to it, so a small model does not reserve a whole 256 MiB block.
  WeightStore(Context& ctx, DType storage, VkDeviceSize expected_bytes = 0);
  Context& context() { return arena_.context(); }
  DType storage() const { return storage_; }

  // Upload one tensor (host data in f32). Names must be unique. With a batch the copy is
  // complete only after batch->finish().
  void add(const std::string& name, const Shape& shape, const float* data, UploadBatch* batch = nullptr);
  // Same, host data already in the storage dtype (storage() bytes, little-endian).
  void add_bytes(const std::string& name, const Shape& shape, const void* data, UploadBatch& batch);
  // Overwrite an uploaded tensor in place (same shape; graphs bound to it see the new values):
  // how LoRA changes reach networks that are already built.
  void replace(const std::string& name, const float* data);
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // The tensor, checked: a missing name or a shape other than `expect` (when given) is an
  // Error naming the tensor and both shapes.
  const DeviceTensor& get(const std::string& name, const Shape& expect = {}) const;
  // Shorthand: bind into a graph (checked as in get()).
  Tensor bind(Graph& g, const std::string& name, const Shape& expect = {}) const;
  std::vector<std::string> names() const;
  VkDeviceSize bytes() const { return arena_.used_bytes(); }

 private:
  DType storage_;
  Arena arena_;
  std::map<std::string, DeviceTensor> tensors_;
};

}  // namespace vksd
