// Small Vulkan helpers shared by the viewer's graphics layer (window, ImGui renderer, textures).
#pragma once
#include <vulkan/vulkan.h>

#include "runtime/gpu/context.h"
#include "runtime/error.h"

namespace vksd::view {

// A buffer with its own memory; host-visible ones stay mapped for their whole life.
struct VkBufferAlloc {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkDeviceSize size = 0;
  void* mapped = nullptr;
};

inline VkBufferAlloc create_buffer(Context& ctx, VkDeviceSize size, VkBufferUsageFlags usage, bool host_visible) {
  VkBufferAlloc b;
  b.size = size;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = size;
  bci.usage = usage;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  vk_check(vkCreateBuffer(ctx.device(), &bci, nullptr, &b.buffer), "vkCreateBuffer (viewer)");
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(ctx.device(), b.buffer, &req);
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = host_visible
      ? ctx.memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
      : ctx.memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  VkResult r = vkAllocateMemory(ctx.device(), &ai, nullptr, &b.memory);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(ctx.device(), b.buffer, nullptr);
    fail("viewer: cannot allocate " + std::to_string(size) + " bytes of buffer memory (" + vk_result_name(r) + ")");
  }
  vk_check(vkBindBufferMemory(ctx.device(), b.buffer, b.memory, 0), "vkBindBufferMemory (viewer)");
  if (host_visible) vk_check(vkMapMemory(ctx.device(), b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped), "vkMapMemory (viewer)");
  return b;
}

inline void destroy_buffer(Context& ctx, VkBufferAlloc& b) {
  if (b.mapped) vkUnmapMemory(ctx.device(), b.memory);
  if (b.buffer) vkDestroyBuffer(ctx.device(), b.buffer, nullptr);
  if (b.memory) vkFreeMemory(ctx.device(), b.memory, nullptr);
  b = {};
}

// A 2D RGBA8 image (sampled + transfer dst) in device-local memory, with a view.
struct VkImageAlloc {
  VkImage image = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkImageView view = VK_NULL_HANDLE;
  VkDeviceSize bytes = 0;  // allocation size, for Context::track_memory
};

inline VkImageAlloc create_image_rgba8(Context& ctx, uint32_t width, uint32_t height) {
  VkImageAlloc im;
  VkImageCreateInfo ici{VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO};
  ici.imageType = VK_IMAGE_TYPE_2D;
  ici.format = VK_FORMAT_R8G8B8A8_UNORM;
  ici.extent = {width, height, 1};
  ici.mipLevels = 1;
  ici.arrayLayers = 1;
  ici.samples = VK_SAMPLE_COUNT_1_BIT;
  ici.tiling = VK_IMAGE_TILING_OPTIMAL;
  ici.usage = VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT;
  ici.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  ici.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
  vk_check(vkCreateImage(ctx.device(), &ici, nullptr, &im.image), "vkCreateImage (viewer texture)");
  VkMemoryRequirements req;
  vkGetImageMemoryRequirements(ctx.device(), im.image, &req);
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = ctx.memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  VkResult r = vkAllocateMemory(ctx.device(), &ai, nullptr, &im.memory);
  if (r != VK_SUCCESS) {
    vkDestroyImage(ctx.device(), im.image, nullptr);
    fail("viewer: cannot allocate a " + std::to_string(width) + "x" + std::to_string(height) + " texture (" +
         vk_result_name(r) + ")");
  }
  im.bytes = req.size;
  vk_check(vkBindImageMemory(ctx.device(), im.image, im.memory, 0), "vkBindImageMemory (viewer texture)");
  VkImageViewCreateInfo vci{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
  vci.image = im.image;
  vci.viewType = VK_IMAGE_VIEW_TYPE_2D;
  vci.format = VK_FORMAT_R8G8B8A8_UNORM;
  vci.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  vk_check(vkCreateImageView(ctx.device(), &vci, nullptr, &im.view), "vkCreateImageView (viewer texture)");
  return im;
}

inline void destroy_image(Context& ctx, VkImageAlloc& im) {
  if (im.view) vkDestroyImageView(ctx.device(), im.view, nullptr);
  if (im.image) vkDestroyImage(ctx.device(), im.image, nullptr);
  if (im.memory) vkFreeMemory(ctx.device(), im.memory, nullptr);
  im = {};
}

// One image memory barrier on the whole (single-mip, single-layer) colour image.
inline void image_barrier(VkCommandBuffer cb, VkImage image, VkImageLayout from, VkImageLayout to,
                          VkPipelineStageFlags src_stage, VkAccessFlags src_access,
                          VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
  VkImageMemoryBarrier b{VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER};
  b.srcAccessMask = src_access;
  b.dstAccessMask = dst_access;
  b.oldLayout = from;
  b.newLayout = to;
  b.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  b.image = image;
  b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  vkCmdPipelineBarrier(cb, src_stage, dst_stage, 0, 0, nullptr, 0, nullptr, 1, &b);
}

}  // namespace vksd::view
