// Texture: an RGBA8 (R8G8B8A8_UNORM) sampled image that ImGui can draw (ImGui::Image(t.id(), ...)).
//
// It lives in SHADER_READ_ONLY_OPTIMAL between updates; every update is recorded into the
// frame's command buffer (outside the render pass) with the barriers that order it after the
// previous frames' reads and before this frame's draws. It starts cleared to transparent black.
#pragma once
#include <imgui.h>

#include <vector>
#include <vulkan/vulkan.h>

#include "runtime/io/image_io.h"
#include "viewer/vk_util.h"

namespace vksd {
class Context;
}

namespace vksd::view {

class ImGuiRenderer;

class Texture {
 public:
  Texture(Context& ctx, ImGuiRenderer& r, int width, int height, bool nearest = true);
  ~Texture();  // the caller guarantees no in-flight frame uses it (Window::wait_frames)
  Texture(const Texture&) = delete;
  Texture& operator=(const Texture&) = delete;

  ImTextureID id() const;
  int width() const { return width_; }
  int height() const { return height_; }
  VkImage image() const { return image_.image; }

  // Records into cb (outside a render pass): copy width*height RGBA8 texels, tightly packed,
  // from `src` at `offset`. The barriers order the copy after earlier fragment-shader reads
  // of the texture and after compute-shader or transfer writes of `src` recorded earlier on
  // the same queue (a kernel that wrote the preview), and before later fragment-shader reads.
  // The producer must not overwrite `src` before this frame finished. `offset` must be a
  // multiple of 4 and `src` have TRANSFER_SRC usage (every runtime Buffer has).
  void record_copy_from(VkCommandBuffer cb, VkBuffer src, VkDeviceSize offset);
  // Host pixels (an RGB or RGBA Image of exactly width x height) through this texture's
  // staging buffer for `frame_slot` (Window::frame_slot(): that slot's previous frame is
  // finished once begin_frame returned), recorded into cb. At most one upload per texture per
  // frame (a second one would overwrite the staging data the first copy reads).
  void upload(VkCommandBuffer cb, int frame_slot, const Image& img);

 private:
  Context& ctx_;
  ImGuiRenderer& renderer_;
  int width_, height_;
  VkImageAlloc image_;
  VkDescriptorSet set_ = VK_NULL_HANDLE;
  std::vector<VkBufferAlloc> staging_;  // one per frame slot, created on first upload
  int64_t tracked_bytes_ = 0;           // under "preview"
};

}  // namespace vksd::view
