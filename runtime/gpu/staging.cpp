#include "runtime/gpu/staging.h"

#include <algorithm>
#include <cstring>

#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/device_hint.h"
#include "runtime/gpu/fault_inject.h"
#include "runtime/gpu/memory.h"

namespace vksd {

namespace {

void barrier(VkCommandBuffer cb, VkAccessFlags src, VkPipelineStageFlags src_stage, VkAccessFlags dst,
             VkPipelineStageFlags dst_stage) {
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = src;
  mb.dstAccessMask = dst;
  vkCmdPipelineBarrier(cb, src_stage, dst_stage, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

// Everything earlier on the queue (kernels, copies) against the ring's copies, both directions.
constexpr VkAccessFlags kAnyAccess = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                     VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
constexpr VkPipelineStageFlags kAnyStage = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;

}  // namespace

StagingRing::StagingRing(Context& ctx) : ctx_(ctx), slots_(kSlots) {
  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = ctx.queue_family();
  vk_check(vkCreateCommandPool(ctx.device(), &pci, nullptr, &pool_), "vkCreateCommandPool (staging)");
}

StagingRing::~StagingRing() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Slot& s : slots_) {
    if (s.in_flight) vkWaitForFences(ctx_.device(), 1, &s.fence, VK_TRUE, UINT64_MAX);
    if (s.recording) vkEndCommandBuffer(s.cb);
    if (s.fence) vkDestroyFence(ctx_.device(), s.fence, nullptr);
    s.buffer.reset();
  }
  vkDestroyCommandPool(ctx_.device(), pool_, nullptr);  // frees the command buffers
}

uint64_t StagingRing::waits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waits_;
}

StagingRing::Slot& StagingRing::begin_slot(VkDeviceSize want) {
  Slot& s = slots_[(size_t)current_];
  if (s.recording) return s;
  if (s.in_flight) wait(s);
  want = std::min(kSlotBytes, std::max(want, kSmallSlotBytes));
  if (s.buffer && s.buffer->size() < want) s.buffer.reset();
  if (!s.buffer) s.buffer = std::make_unique<Buffer>(ctx_, want, Buffer::Use::Staging, "staging");
  if (!s.cb) {
    VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = pool_;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    vk_check(vkAllocateCommandBuffers(ctx_.device(), &ai, &s.cb), "vkAllocateCommandBuffers (staging)");
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    vk_check(vkCreateFence(ctx_.device(), &fci, nullptr, &s.fence), "vkCreateFence (staging)");
  }
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  vk_check(vkBeginCommandBuffer(s.cb, &bi), "vkBeginCommandBuffer (staging)");
  s.recording = true;
  s.used = 0;
  return s;
}

void StagingRing::submit(Slot& s) {
  if (!s.recording) return;
  // The copies (either direction) before anything later on the queue, and before the host
  // reads a download.
  barrier(s.cb, VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
          kAnyAccess | VK_ACCESS_HOST_READ_BIT, kAnyStage | VK_PIPELINE_STAGE_HOST_BIT);
  s.recording = false;
  vk_check(vkEndCommandBuffer(s.cb), "vkEndCommandBuffer (staging)");
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &s.cb;
  ctx_.submit(si, s.fence);
  s.in_flight = true;
  current_ = (current_ + 1) % kSlots;
}

void StagingRing::wait(Slot& s) {
  VkResult r = vkWaitForFences(ctx_.device(), 1, &s.fence, VK_TRUE, UINT64_MAX);
  ++waits_;
  if (r == VK_SUCCESS) r = injected_fault(FaultSite::Transfer);  // a test may force a failure
  if (r == VK_SUCCESS || r == VK_ERROR_DEVICE_LOST) {
    // After a real or injected failure the slot is not waited for again (the destructor).
    s.in_flight = false;
    vkResetFences(ctx_.device(), 1, &s.fence);
  }
  if (r != VK_SUCCESS)
    fail(std::string("a one-time GPU transfer (upload or download) failed: ") + vk_result_name(r) + vk_result_advice(r));
}

void StagingRing::flush_locked() {
  submit(slots_[(size_t)current_]);
  // Oldest first: the slots after current_ were submitted before those up to it.
  for (int i = 0; i < kSlots; ++i) {
    Slot& s = slots_[(size_t)((current_ + i) % kSlots)];
    if (s.in_flight) wait(s);
  }
  current_ = 0;
}

void StagingRing::shrink_locked() {
  for (Slot& s : slots_)
    if (s.buffer && !s.recording && !s.in_flight && s.buffer->size() > kSmallSlotBytes) s.buffer.reset();
}

VkDeviceSize StagingRing::batch_slot_bytes(VkDeviceSize expected) {
  if (!expected) return kSlotBytes;
  return std::clamp(align_up(expected / (8 * kSlots), 256), kSmallSlotBytes, kSlotBytes);
}

void StagingRing::expect_batch(VkDeviceSize bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_slot_ = batch_slot_bytes(bytes);
}

void StagingRing::upload(VkBuffer dst, VkDeviceSize offset, const void* data, VkDeviceSize bytes, bool batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  const char* src = (const char*)data;
  while (bytes > 0) {
    Slot& s = begin_slot(batch ? batch_slot_ : std::max(bytes, kSmallSlotBytes));
    const VkDeviceSize cap = s.buffer->size();
    if (s.used == 0) barrier(s.cb, kAnyAccess, kAnyStage, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT);
    const VkDeviceSize n = std::min(bytes, cap - s.used);
    std::memcpy((char*)s.buffer->mapped() + s.used, src, n);
    const VkBufferCopy region{s.used, offset, n};
    vkCmdCopyBuffer(s.cb, s.buffer->handle(), dst, 1, &region);
    s.used = std::min(cap, align_up(s.used + n, 16));
    if (s.used == cap) submit(s);
    src += n, offset += n, bytes -= n;
  }
}

void StagingRing::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  flush_locked();
  shrink_locked();
}

void StagingRing::trim() {
  std::lock_guard<std::mutex> lock(mutex_);
  flush_locked();
  for (Slot& s : slots_) s.buffer.reset();
  batch_slot_ = kSlotBytes;
}

void StagingRing::download(VkBuffer src, VkDeviceSize offset, void* data, VkDeviceSize bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  flush_locked();
  char* out = (char*)data;
  while (bytes > 0) {
    // Up to kSlots chunks in flight, then read them back in order.
    struct Chunk { Slot* slot; VkDeviceSize n; };
    std::vector<Chunk> chunks;
    for (int i = 0; i < kSlots && bytes > 0; ++i) {
      Slot& s = begin_slot(std::max(bytes, kSmallSlotBytes));
      const VkDeviceSize n = std::min(bytes, s.buffer->size());
      barrier(s.cb, kAnyAccess, kAnyStage, VK_ACCESS_TRANSFER_READ_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT);
      const VkBufferCopy region{offset, 0, n};
      vkCmdCopyBuffer(s.cb, src, s.buffer->handle(), 1, &region);
      submit(s);
      chunks.push_back({&s, n});
      offset += n, bytes -= n;
    }
    for (const Chunk& c : chunks) {
      wait(*c.slot);
      std::memcpy(out, c.slot->buffer->mapped(), c.n);
      out += c.n;
    }
  }
  current_ = 0;
  shrink_locked();
}

}  // namespace vksd
