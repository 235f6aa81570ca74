// ImGuiRenderer: our Dear ImGui render backend on the runtime's Vulkan device.
//
// Debian's ImGui 1.86 Vulkan backend always binds the font's descriptor set, so it cannot
// draw user textures (our previews). Here every texture is one descriptor set (a combined
// image sampler) and its VkDescriptorSet handle IS the ImTextureID: render() binds each draw
// command's own set.
#pragma once
#include <imgui.h>

#include <map>
#include <vector>
#include <vulkan/vulkan.h>

#include "viewer/vk_util.h"

namespace vksd {
class Context;
}

namespace vksd::view {

inline ImTextureID to_texture_id(VkDescriptorSet s) { return (ImTextureID)(uintptr_t)s; }
inline VkDescriptorSet to_descriptor_set(ImTextureID id) { return (VkDescriptorSet)(uintptr_t)id; }

class ImGuiRenderer {
 public:
  // Needs ImGui::CreateContext() done and the fonts added (the atlas is built and uploaded
  // here, once, with one-shot commands). The pipeline is for `rp` (subpass 0; any compatible
  // render pass works). frames_in_flight: Window::kFramesInFlight (one vertex/index buffer
  // pair per frame slot, grown on demand).
  ImGuiRenderer(Context& ctx, VkRenderPass rp, int frames_in_flight);
  ~ImGuiRenderer();  // the caller guarantees no in-flight frame uses it (Window::wait_frames)
  ImGuiRenderer(const ImGuiRenderer&) = delete;
  ImGuiRenderer& operator=(const ImGuiRenderer&) = delete;

  // A descriptor set sampling `view` (which must be in SHADER_READ_ONLY_OPTIMAL when drawn),
  // nearest or linear, clamped to edge. Cast with to_texture_id() for ImGui::Image.
  VkDescriptorSet add_texture(VkImageView view, bool nearest);
  // The caller guarantees no in-flight frame uses it (Window::wait_frames).
  void remove_texture(VkDescriptorSet set);

  // Records dd's draws into cb, inside the render pass. frame_slot selects the vertex/index
  // buffers: the slot's previous frame must be finished (true once Window::begin_frame returned).
  void render(ImDrawData* dd, VkCommandBuffer cb, int frame_slot);

  Context& context() { return ctx_; }

 private:
  struct FrameBuffers {
    VkBufferAlloc vertices, indices;
  };
  void release();
  void create_pipeline(VkRenderPass rp);
  void create_font_texture();
  void grow(VkBufferAlloc& b, VkDeviceSize need, VkBufferUsageFlags usage);
  void setup_render_state(ImDrawData* dd, VkCommandBuffer cb, const FrameBuffers& fb);

  Context& ctx_;
  VkSampler nearest_ = VK_NULL_HANDLE, linear_ = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout pipeline_layout_ = VK_NULL_HANDLE;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  // Descriptor pools are added as textures are: a fixed-size pool per kSetsPerPool sets.
  std::vector<VkDescriptorPool> pools_;
  std::map<VkDescriptorSet, VkDescriptorPool> sets_;
  VkImageAlloc font_;
  VkDescriptorSet font_set_ = VK_NULL_HANDLE;
  std::vector<FrameBuffers> frames_;
  int64_t tracked_bytes_ = 0;  // under "preview"
};

}  // namespace vksd::view
