// LatentImages: a row of latents shown as pictures in a panel, each through the model's linear
// latent -> RGB map computed on the GPU (the runtime's LatentPreview recorded into the frame's
// command buffer, then copied into a texture), as the canvas does. Panels that show "x0 of this
// or that" (guidance, comparison, forward process) hold one.
#pragma once
#include <memory>
#include <vector>

#include <imgui.h>

#include "runtime/diffusion/preview.h"
#include "viewer/texture.h"

namespace vksd::view {

class ImGuiRenderer;
class Window;

class LatentImages {
 public:
  explicit LatentImages(int count) : count_(count) {}
  // (Re)creates the textures for latents of this geometry; waits for frames in flight first
  // when they change.
  void ensure(Context& ctx, ImGuiRenderer& r, Window& w, int channels, int lh, int lw);
  // Records latent k's preview into cmd (at most once per image per frame).
  void show(VkCommandBuffer cmd, int frame_slot, int k, const std::vector<float>& latent, const LatentRgbMap& map,
            float scale = 1.f);
  bool ready() const { return preview_ != nullptr; }
  bool shown(int k) const { return ready() && shown_[(size_t)k]; }
  ImTextureID id(int k) const { return textures_[(size_t)k]->id(); }
  // Draws image k at `size` with a caption above; returns its rectangle in framebuffer pixels.
  ImVec4 draw(int k, const char* caption, ImVec2 size) const;
  void release(Window& w);  // drop the GPU resources (after the frames in flight finish)

 private:
  int count_, channels_ = 0, lh_ = 0, lw_ = 0;
  std::unique_ptr<LatentPreview> preview_;
  std::vector<std::unique_ptr<Texture>> textures_;
  std::vector<bool> shown_;
};

}  // namespace vksd::view
