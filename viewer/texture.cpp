#include "viewer/texture.h"

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "viewer/imgui_renderer.h"

namespace vksd::view {

Texture::Texture(Context& ctx, ImGuiRenderer& r, int width, int height, bool nearest)
    : ctx_(ctx), renderer_(r), width_(width), height_(height) {
  if (width <= 0 || height <= 0)
    fail("Texture: invalid size " + std::to_string(width) + "x" + std::to_string(height));
  image_ = create_image_rgba8(ctx, (uint32_t)width, (uint32_t)height);
  tracked_bytes_ = (int64_t)image_.bytes;
  ctx.track_memory("preview", tracked_bytes_);
  try {
    // Cleared and in SHADER_READ_ONLY from the start, so it can be drawn before any update.
    VkCommandBuffer cb = ctx.begin_commands();
    image_barrier(cb, image_.image, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL,
                  VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, 0, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    VkClearColorValue transparent{};
    VkImageSubresourceRange range{VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    vkCmdClearColorImage(cb, image_.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, &transparent, 1, &range);
    image_barrier(cb, image_.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL,
                  VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                  VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
    ctx.submit_and_wait(cb);
    set_ = r.add_texture(image_.view, nearest);
  } catch (...) {
    destroy_image(ctx, image_);
    ctx.track_memory("preview", -tracked_bytes_);
    throw;
  }
}

Texture::~Texture() {
  if (set_) {
    try {
      renderer_.remove_texture(set_);
    } catch (...) {
    }
  }
  for (auto& b : staging_) destroy_buffer(ctx_, b);
  destroy_image(ctx_, image_);
  ctx_.track_memory("preview", -tracked_bytes_);
}

ImTextureID Texture::id() const { return to_texture_id(set_); }

void Texture::record_copy_from(VkCommandBuffer cb, VkBuffer src, VkDeviceSize offset) {
  // The source: compute-shader / transfer writes earlier on the queue -> this transfer read.
  VkBufferMemoryBarrier bb{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
  bb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  bb.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
  bb.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  bb.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  bb.buffer = src;
  bb.offset = offset;
  bb.size = (VkDeviceSize)width_ * height_ * 4;
  // The image: earlier fragment-shader reads (previous frames) -> transfer write. A read
  // before a write only needs the execution dependency, hence no source access.
  VkImageMemoryBarrier ib{VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER};
  ib.srcAccessMask = 0;
  ib.dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  ib.oldLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL;
  ib.newLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
  ib.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  ib.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  ib.image = image_.image;
  ib.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  vkCmdPipelineBarrier(cb,
                       VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                           VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT,
                       VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, nullptr, 1, &bb, 1, &ib);

  VkBufferImageCopy region{};
  region.bufferOffset = offset;
  region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  region.imageExtent = {(uint32_t)width_, (uint32_t)height_, 1};
  vkCmdCopyBufferToImage(cb, src, image_.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &region);

  image_barrier(cb, image_.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL,
                VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
}

void Texture::upload(VkCommandBuffer cb, int frame_slot, const Image& img) {
  if (img.width != width_ || img.height != height_ || (img.channels != 3 && img.channels != 4))
    fail("Texture::upload: expected a " + std::to_string(width_) + "x" + std::to_string(height_) +
         " RGB or RGBA image, got " + std::to_string(img.width) + "x" + std::to_string(img.height) + "x" +
         std::to_string(img.channels));
  if (frame_slot < 0 || frame_slot > 64) fail("Texture::upload: bad frame slot " + std::to_string(frame_slot));
  if ((size_t)frame_slot >= staging_.size()) staging_.resize((size_t)frame_slot + 1);
  VkBufferAlloc& st = staging_[(size_t)frame_slot];
  VkDeviceSize bytes = (VkDeviceSize)width_ * height_ * 4;
  if (!st.buffer) {
    st = create_buffer(ctx_, bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, true);
    tracked_bytes_ += (int64_t)bytes;
    ctx_.track_memory("preview", (int64_t)bytes);
  }
  // Host writes to coherent memory before the submit are visible to the copy.
  uint8_t* dst = static_cast<uint8_t*>(st.mapped);
  size_t n = (size_t)width_ * height_;
  if (img.channels == 4) {
    std::copy(img.pixels.begin(), img.pixels.begin() + (ptrdiff_t)(n * 4), dst);
  } else {
    for (size_t i = 0; i < n; ++i) {
      dst[i * 4 + 0] = img.pixels[i * 3 + 0];
      dst[i * 4 + 1] = img.pixels[i * 3 + 1];
      dst[i * 4 + 2] = img.pixels[i * 3 + 2];
      dst[i * 4 + 3] = 255;
    }
  }
  record_copy_from(cb, st.buffer, 0);
}

}  // namespace vksd::view
