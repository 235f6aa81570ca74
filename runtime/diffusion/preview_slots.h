// The machinery LatentPreview and HeatmapPreview share (internal to runtime/diffusion): a
// compute kernel that turns a slot's host-visible float input into RGBA8 texels in device
// memory, with one descriptor set per slot so that a presenting client can record several slots
// per frame and keep frames in flight. Bindings: 0 = the slot's input (R32F uniform texel
// buffer), 1.. = texel buffers shared by every slot (R32F, e.g. colour tables), last = the slot's
// output (RGBA8 storage texel buffer).
#pragma once
#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vksd {

class Buffer;
class Context;

class PreviewSlots {
 public:
  // `what` names the owner in error messages; `in_values` floats in and `out_texels` texels out
  // per slot; `shared` buffers are read as R32F over their whole size.
  PreviewSlots(Context& ctx, const std::string& what, const char* kernel, int slots, uint64_t in_values,
               uint64_t out_texels, const std::vector<const Buffer*>& shared = {});
  ~PreviewSlots();
  PreviewSlots(const PreviewSlots&) = delete;
  PreviewSlots& operator=(const PreviewSlots&) = delete;

  int slots() const { return slots_; }
  void check_slot(int slot) const;  // an error naming the owner for a slot out of range
  float* input(int slot);           // host-visible, in_values floats
  VkBuffer output_buffer() const;
  VkDeviceSize output_offset(int slot) const;  // multiples of 256 bytes

  // Records into cb: a barrier (the slot's output was last read by a transfer, or written by
  // this kernel in an earlier frame), the dispatch of ceil(out_texels / 64) workgroups with the
  // push constants, and a barrier that makes the output visible to TRANSFER reads.
  void record(VkCommandBuffer cb, int slot, const void* push, uint32_t push_bytes);

  static constexpr uint32_t kGroup = 64;  // the kernels' local_size_x

 private:
  Context& ctx_;
  std::string what_;
  int slots_;
  uint64_t in_values_, out_texels_;
  VkDeviceSize in_stride_ = 0, out_stride_ = 0;
  std::unique_ptr<Buffer> input_, output_;
  VkDescriptorPool pool_ = VK_NULL_HANDLE;
  std::vector<VkDescriptorSet> sets_;
  std::vector<VkBufferView> views_;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
};

}  // namespace vksd
