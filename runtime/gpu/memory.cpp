#include "runtime/gpu/memory.h"

#include <algorithm>
#include <cstring>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/gpu/device_hint.h"
#include "runtime/gpu/fault_inject.h"
#include "runtime/gpu/staging.h"

namespace vksd {

Buffer::Buffer(Context& ctx, VkDeviceSize bytes, Use use, const std::string& what) : ctx_(ctx), size_(bytes) {
  const auto& info = ctx.info();
  if (bytes == 0) bytes = size_ = 16;
  if (bytes > info.max_memory_allocation)
    fail(what + ": " + std::to_string(bytes) + " bytes exceed the device's maxMemoryAllocationSize (" +
         std::to_string(info.max_memory_allocation) + ")" + kDeviceLimitHint);
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = bytes;
  bci.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  if (use == Use::Device)
    bci.usage |= VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT | VK_BUFFER_USAGE_STORAGE_TEXEL_BUFFER_BIT |
                 VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
  if (use == Use::HostTexel) bci.usage |= VK_BUFFER_USAGE_UNIFORM_TEXEL_BUFFER_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  vk_check(vkCreateBuffer(ctx.device(), &bci, nullptr, &buffer_), ("vkCreateBuffer for " + what).c_str());
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(ctx.device(), buffer_, &req);
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = use == Use::Device
      ? ctx.memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)
      : ctx.memory_type(req.memoryTypeBits,
                        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  VkResult r = injected_fault(FaultSite::Alloc);  // VK_SUCCESS unless a test forces a failure
  if (r == VK_SUCCESS) r = vkAllocateMemory(ctx.device(), &ai, nullptr, &memory_);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(ctx.device(), buffer_, nullptr);
    const std::string amount = bytes >= (1u << 20) ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes >> 10) + " KiB";
    fail("out of device memory allocating " + amount + " for " + what + " (" +
         vk_result_name(r) + ")" + kDeviceLimitHint);
  }
  vk_check(vkBindBufferMemory(ctx.device(), buffer_, memory_, 0), "vkBindBufferMemory");
  category_ = what.substr(0, what.find(' '));
  ctx.track_memory(category_, (int64_t)size_);
  if (use != Use::Device) vk_check(vkMapMemory(ctx.device(), memory_, 0, VK_WHOLE_SIZE, 0, &mapped_), "vkMapMemory");
}

Buffer::~Buffer() {
  ctx_.track_memory(category_, -(int64_t)size_);
  if (mapped_) vkUnmapMemory(ctx_.device(), memory_);
  vkDestroyBuffer(ctx_.device(), buffer_, nullptr);
  vkFreeMemory(ctx_.device(), memory_, nullptr);
}

Arena::Arena(Context& ctx, std::string name, VkDeviceSize block_bytes)
    : ctx_(ctx), name_(std::move(name)), block_bytes_(std::min(block_bytes, ctx.info().max_memory_allocation)) {}

DeviceTensor Arena::alloc(const Shape& shape, DType dtype) {
  VkDeviceSize bytes = align_up((VkDeviceSize)shape_numel(shape) * dtype_size(dtype), 16);
  size_t b = 0;
  while (b < blocks_.size() && align_up(cursors_[b], kTensorAlignment) + bytes > blocks_[b]->size()) ++b;
  if (b == blocks_.size()) {
    VkDeviceSize sz = std::max(block_bytes_, bytes);
    if (expected_ > placed_) sz = std::max(bytes, std::min(sz, expected_ - placed_));
    blocks_.push_back(std::make_unique<Buffer>(ctx_, sz, Buffer::Use::Device, name_));
    cursors_.push_back(0);
  }
  const VkDeviceSize at = align_up(cursors_[b], kTensorAlignment);
  DeviceTensor t{blocks_[b]->handle(), at, shape, dtype};
  cursors_[b] = at + bytes;
  used_ += bytes;
  placed_ += align_up(bytes, kTensorAlignment);
  return t;
}

VkDeviceSize Arena::reserved_bytes() const {
  VkDeviceSize s = 0;
  for (auto& b : blocks_) s += b->size();
  return s;
}

VkDeviceSize plan_offsets(std::vector<PlanItem>& items, VkDeviceSize alignment) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // Largest first, then earliest: big tensors get the low, contiguous space.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (items[a].bytes != items[b].bytes) return items[a].bytes > items[b].bytes;
    return items[a].first < items[b].first;
  });
  std::vector<size_t> placed;
  VkDeviceSize peak = 0;
  for (size_t i : order) {
    auto& it = items[i];
    std::vector<std::pair<VkDeviceSize, VkDeviceSize>> busy;  // [begin, end) of conflicting items
    for (size_t j : placed) {
      const auto& o = items[j];
      if (o.first <= it.last && it.first <= o.last) busy.push_back({o.offset, o.offset + o.bytes});
    }
    std::sort(busy.begin(), busy.end());
    VkDeviceSize off = 0;
    for (auto& [b, e] : busy) {
      if (off + it.bytes <= b) break;
      off = std::max(off, align_up(e, alignment));
    }
    it.offset = off;
    peak = std::max(peak, off + it.bytes);
    placed.push_back(i);
  }
  return peak;
}

// ---- staging: through the Context's StagingRing ----

void upload_bytes(Context& ctx, VkBuffer dst, VkDeviceSize offset, const void* data, VkDeviceSize bytes) {
  StagingRing& ring = ctx.staging();
  ring.upload(dst, offset, data, bytes);
  ring.flush();
}

void download_bytes(Context& ctx, VkBuffer src, VkDeviceSize offset, void* data, VkDeviceSize bytes) {
  ctx.staging().download(src, offset, data, bytes);
}

UploadBatch::UploadBatch(Context& ctx) : ctx_(ctx) {}

UploadBatch::~UploadBatch() {
  if (pending_) {
    try {
      ctx_.staging().flush();
    } catch (...) {  // unwinding already: the first error is the one reported
    }
  }
}

void UploadBatch::bytes(VkBuffer dst, VkDeviceSize offset, const void* data, VkDeviceSize n) {
  ctx_.staging().upload(dst, offset, data, n, /*batch=*/true);
  pending_ = true;
}

void UploadBatch::finish() {
  pending_ = false;
  ctx_.staging().trim();  // waits for the copies; the batch's slots are not needed after
}

std::vector<uint8_t> to_storage(DType dtype, const float* data, size_t n) {
  std::vector<uint8_t> out(n * dtype_size(dtype));
  if (dtype == DType::F16) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = f32_to_f16(data[i]);
      std::memcpy(&out[i * 2], &h, 2);
    }
  } else if (dtype == DType::I32) {
    for (size_t i = 0; i < n; ++i) {
      const int32_t v = (int32_t)data[i];
      std::memcpy(&out[i * 4], &v, 4);
    }
  } else {
    std::memcpy(out.data(), data, n * 4);
  }
  return out;
}

void upload(Context& ctx, const DeviceTensor& t, const float* data) {
  if (t.dtype == DType::F32) {  // no copy needed
    upload_bytes(ctx, t.buffer, t.offset, data, t.bytes());
    return;
  }
  const std::vector<uint8_t> bytes = to_storage(t.dtype, data, (size_t)t.numel());
  upload_bytes(ctx, t.buffer, t.offset, bytes.data(), bytes.size());
}

void upload_i32(Context& ctx, const DeviceTensor& t, const int32_t* data) {
  if (t.dtype != DType::I32) fail("upload_i32: tensor is " + std::string(dtype_name(t.dtype)));
  upload_bytes(ctx, t.buffer, t.offset, data, (VkDeviceSize)t.numel() * 4);
}

std::vector<float> download(Context& ctx, const DeviceTensor& t) {
  size_t n = (size_t)t.numel();
  std::vector<float> out(n);
  if (t.dtype == DType::F16) {
    std::vector<uint16_t> h(n);
    download_bytes(ctx, t.buffer, t.offset, h.data(), n * 2);
    for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(h[i]);
  } else if (t.dtype == DType::I32) {
    std::vector<int32_t> v(n);
    download_bytes(ctx, t.buffer, t.offset, v.data(), n * 4);
    for (size_t i = 0; i < n; ++i) out[i] = (float)v[i];
  } else {
    download_bytes(ctx, t.buffer, t.offset, out.data(), n * 4);
  }
  return out;
}

}  // namespace vksd
