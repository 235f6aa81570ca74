#include "runtime/gpu/scratch_arena.h"

#include "runtime/gpu/memory.h"

namespace vksd {

ScratchArena::ScratchArena(Context& ctx) : ctx_(ctx) {}
ScratchArena::~ScratchArena() = default;

VkDeviceSize ScratchArena::size() const { return buffer_ ? buffer_->size() : 0; }

VkBuffer ScratchArena::buffer() const { return buffer_ ? buffer_->handle() : VK_NULL_HANDLE; }

uint64_t ScratchArena::reserve(VkDeviceSize bytes) {
  bytes = std::max<VkDeviceSize>(bytes, 256);
  if (buffer_ && buffer_->size() >= bytes) return generation_;
  ++generation_;    // every graph recorded against the old buffer re-records
  buffer_.reset();  // free first: the peak is the new size, not old + new
  buffer_ = std::make_unique<Buffer>(ctx_, bytes, Buffer::Use::Device, "activations (shared by the networks)");
  return generation_;
}

}  // namespace vksd
