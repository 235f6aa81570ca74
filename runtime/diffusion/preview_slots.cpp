#include "runtime/diffusion/preview_slots.h"

#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/kernel.h"
#include "runtime/gpu/memory.h"

namespace vksd {

PreviewSlots::PreviewSlots(Context& ctx, const std::string& what, const char* kernel, int slots, uint64_t in_values,
                           uint64_t out_texels, const std::vector<const Buffer*>& shared)
    : ctx_(ctx), what_(what), slots_(slots), in_values_(in_values), out_texels_(out_texels) {
  const auto& info = ctx.info();
  if (in_values > info.max_texel_buffer_elements || out_texels > info.max_texel_buffer_elements)
    fail(what + ": " + std::to_string(std::max(in_values, out_texels)) + " values exceed maxTexelBufferElements (" +
         std::to_string(info.max_texel_buffer_elements) + ")");
  if ((out_texels + kGroup - 1) / kGroup > info.max_workgroup_count[0])
    fail(what + ": " + std::to_string(out_texels) + " texels need more workgroups than the device allows");
  if (!ctx.format_supported(VK_FORMAT_R32_SFLOAT, VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT))
    fail(what + ": the device cannot read R32_SFLOAT uniform texel buffers");
  if (!ctx.format_supported(VK_FORMAT_R8G8B8A8_UNORM, VK_FORMAT_FEATURE_STORAGE_TEXEL_BUFFER_BIT))
    fail(what + ": the device cannot write R8G8B8A8_UNORM storage texel buffers");

  VkDevice dev = ctx.device();
  in_stride_ = align_up(in_values * sizeof(float), kTensorAlignment);
  out_stride_ = align_up(out_texels * 4, kTensorAlignment);
  input_ = std::make_unique<Buffer>(ctx, in_stride_ * slots, Buffer::Use::HostTexel, "preview input (" + what + ")");
  output_ = std::make_unique<Buffer>(ctx, out_stride_ * slots, Buffer::Use::Device, "preview rgba (" + what + ")");

  const uint32_t bindings = 2 + (uint32_t)shared.size();
  std::vector<Access> access(bindings, Access::Read);
  access.back() = Access::Write;
  const Pipeline& p = ctx.kernels().get(kernel, {}, access);
  pipeline_ = p.pipeline;
  layout_ = p.layout;

  VkDescriptorPoolSize sizes[2] = {{VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, (uint32_t)slots * (bindings - 1)},
                                   {VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER, (uint32_t)slots}};
  VkDescriptorPoolCreateInfo pci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pci.maxSets = (uint32_t)slots;
  pci.poolSizeCount = 2;
  pci.pPoolSizes = sizes;
  vk_check(vkCreateDescriptorPool(dev, &pci, nullptr, &pool_), ("vkCreateDescriptorPool (" + what + ")").c_str());

  std::vector<VkDescriptorSetLayout> layouts((size_t)slots, p.set_layout);
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = pool_;
  ai.descriptorSetCount = (uint32_t)slots;
  ai.pSetLayouts = layouts.data();
  sets_.resize((size_t)slots);
  vk_check(vkAllocateDescriptorSets(dev, &ai, sets_.data()), ("vkAllocateDescriptorSets (" + what + ")").c_str());

  const auto view = [&](VkBuffer buffer, VkFormat format, VkDeviceSize offset, VkDeviceSize range) {
    VkBufferViewCreateInfo vi{VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO};
    vi.buffer = buffer;
    vi.format = format;
    vi.offset = offset;
    vi.range = range;
    VkBufferView v;
    vk_check(vkCreateBufferView(dev, &vi, nullptr, &v), ("vkCreateBufferView (" + what + ")").c_str());
    views_.push_back(v);
    return v;
  };
  std::vector<VkBufferView> shared_views;
  for (const Buffer* b : shared) shared_views.push_back(view(b->handle(), VK_FORMAT_R32_SFLOAT, 0, b->size()));

  for (int s = 0; s < slots; ++s) {
    std::vector<VkBufferView> slot_views = {view(input_->handle(), VK_FORMAT_R32_SFLOAT, in_stride_ * s, in_values * 4)};
    slot_views.insert(slot_views.end(), shared_views.begin(), shared_views.end());
    slot_views.push_back(view(output_->handle(), VK_FORMAT_R8G8B8A8_UNORM, out_stride_ * s, out_texels * 4));
    std::vector<VkWriteDescriptorSet> w(bindings);
    for (uint32_t b = 0; b < bindings; ++b) {
      w[b] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
      w[b].dstSet = sets_[(size_t)s];
      w[b].dstBinding = b;
      w[b].descriptorCount = 1;
      w[b].descriptorType = b + 1 < bindings ? VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER : VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER;
      w[b].pTexelBufferView = &slot_views[b];
    }
    vkUpdateDescriptorSets(dev, bindings, w.data(), 0, nullptr);
  }
}

PreviewSlots::~PreviewSlots() {
  VkDevice dev = ctx_.device();
  for (VkBufferView v : views_) vkDestroyBufferView(dev, v, nullptr);
  if (pool_) vkDestroyDescriptorPool(dev, pool_, nullptr);  // frees the sets
}

void PreviewSlots::check_slot(int slot) const {
  if (slot < 0 || slot >= slots_) fail(what_ + ": slot " + std::to_string(slot) + " of " + std::to_string(slots_));
}

float* PreviewSlots::input(int slot) {
  check_slot(slot);
  return (float*)((char*)input_->mapped() + in_stride_ * slot);
}

VkBuffer PreviewSlots::output_buffer() const { return output_->handle(); }

VkDeviceSize PreviewSlots::output_offset(int slot) const {
  check_slot(slot);
  return out_stride_ * slot;
}

void PreviewSlots::record(VkCommandBuffer cb, int slot, const void* push, uint32_t push_bytes) {
  check_slot(slot);
  VkBufferMemoryBarrier b{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
  b.srcQueueFamilyIndex = b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  b.buffer = output_->handle();
  b.offset = out_stride_ * slot;
  b.size = out_texels_ * 4;
  // Before: the slot's output was last read by a copy (write-after-read) or written by this
  // kernel in an earlier frame (write-after-write).
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                       VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0, nullptr, 1, &b, 0, nullptr);

  vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline_);
  vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout_, 0, 1, &sets_[(size_t)slot], 0, nullptr);
  vkCmdPushConstants(cb, layout_, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  vkCmdDispatch(cb, (uint32_t)((out_texels_ + kGroup - 1) / kGroup), 1, 1);

  // After: visible to the copy into the client's image.
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
  vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, nullptr, 1, &b,
                       0, nullptr);
}

}  // namespace vksd
