// Device memory, explicitly managed.
//   Buffer        one VkBuffer with its own VkDeviceMemory (a large block).
//   DeviceTensor  a tensor's place in a Buffer: (buffer, offset, shape, dtype).
//   Arena         sub-allocates tensors from large blocks; weights live in one.
//   plan_offsets  the activation planner: gives each intermediate tensor an offset from its
//                 lifetime so that tensors that are never alive together share bytes.
//   upload/download  host <-> device through the Context's staging ring, converting the dtype.
//   UploadBatch   many uploads, one submit per staging slot and one wait at the end (weights).
#pragma once
#include <memory>
#include <string>
#include <vector>
#include <vulkan/vulkan.h>

#include "runtime/gpu/dtype.h"

namespace vksd {

class Context;

// Every tensor is aligned to this many bytes: the largest minTexelBufferOffsetAlignment the
// Vulkan spec allows, so any tensor can be bound as a texel buffer on any device.
constexpr VkDeviceSize kTensorAlignment = 256;

inline VkDeviceSize align_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

class Buffer {
 public:
  // Device: device-local, bindable as texel/storage buffers. Staging: host-visible, mapped,
  // transfers only. HostTexel: host-visible and mapped like Staging, and bindable as a uniform
  // texel buffer, so a kernel reads what the host wrote without a copy (small per-frame inputs).
  enum class Use { Device, Staging, HostTexel };
  Buffer(Context& ctx, VkDeviceSize bytes, Use use, const std::string& what);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  VkBuffer handle() const { return buffer_; }
  VkDeviceSize size() const { return size_; }
  void* mapped() const { return mapped_; }

 private:
  Context& ctx_;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  VkDeviceSize size_ = 0;
  void* mapped_ = nullptr;
  std::string category_;  // first word of `what`, for Context::memory_in_use
};

struct DeviceTensor {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize offset = 0;
  Shape shape;
  DType dtype = DType::F32;
  int64_t numel() const { return shape_numel(shape); }
  VkDeviceSize bytes() const { return (VkDeviceSize)numel() * dtype_size(dtype); }
  bool valid() const { return buffer != VK_NULL_HANDLE; }
};

// Bump allocator over large blocks. Blocks are never larger than the device allows for one
// allocation; a tensor bigger than a block gets a block of its own. A tensor goes into the first
// block with room at its end (so the tails of earlier blocks are filled, not wasted), and with
// expect_total() a new block is only as large as what is still expected: the weights of SD 1.5
// then take their own size, not whole 256 MiB blocks (150 MiB less device memory).
class Arena {
 public:
  Arena(Context& ctx, std::string name, VkDeviceSize block_bytes = 256ull << 20);
  // Bytes all allocations together will take, each counted as align_up(bytes, kTensorAlignment).
  void expect_total(VkDeviceSize bytes) { expected_ = bytes; }
  DeviceTensor alloc(const Shape& shape, DType dtype);
  VkDeviceSize used_bytes() const { return used_; }
  VkDeviceSize reserved_bytes() const;
  Context& context() { return ctx_; }

 private:
  Context& ctx_;
  std::string name_;
  VkDeviceSize block_bytes_;
  std::vector<std::unique_ptr<Buffer>> blocks_;
  std::vector<VkDeviceSize> cursors_;  // per block: first free byte
  VkDeviceSize used_ = 0, placed_ = 0, expected_ = 0;
};

// Activation planner. Items alive over [first, last] (inclusive step indices) must not share
// bytes with any item whose interval intersects theirs. Returns the peak (arena size).
struct PlanItem {
  VkDeviceSize bytes = 0;
  int first = 0, last = 0;
  VkDeviceSize offset = 0;  // output
};
VkDeviceSize plan_offsets(std::vector<PlanItem>& items, VkDeviceSize alignment = kTensorAlignment);

// Host <-> device copies through the Context's staging ring (staging.h; any size), complete
// on return.
void upload_bytes(Context& ctx, VkBuffer dst, VkDeviceSize offset, const void* data, VkDeviceSize bytes);
void download_bytes(Context& ctx, VkBuffer src, VkDeviceSize offset, void* data, VkDeviceSize bytes);

// Uploads that need not be complete one by one (a checkpoint's weights): each call copies the
// host bytes into the staging ring and returns (the host memory may be reused); full slots are
// submitted as they fill and finish() waits for all of them. Until finish() returns, the
// destinations must not be read by GPU work, and the batch's destinations must not overlap.
// A batch destroyed unfinished (an exception) still waits for its copies, so declare it after
// the buffers it writes to.
class UploadBatch {
 public:
  explicit UploadBatch(Context& ctx);
  ~UploadBatch();
  UploadBatch(const UploadBatch&) = delete;
  UploadBatch& operator=(const UploadBatch&) = delete;
  void bytes(VkBuffer dst, VkDeviceSize offset, const void* data, VkDeviceSize n);
  void finish();

 private:
  Context& ctx_;
  bool pending_ = false;
};
// f32 host values as `dtype` bytes (f16 rounded to nearest even; i32 by value).
std::vector<uint8_t> to_storage(DType dtype, const float* data, size_t n);
// Converting helpers: host data is f32 (or i32 for I32 tensors); stored as the tensor's dtype.
void upload(Context& ctx, const DeviceTensor& t, const float* data);
void upload_i32(Context& ctx, const DeviceTensor& t, const int32_t* data);
std::vector<float> download(Context& ctx, const DeviceTensor& t);

// IEEE half conversions (round to nearest even).
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);

}  // namespace vksd
