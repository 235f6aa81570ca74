#include "viewer/panels/latent_images.h"
#include "viewer/panels/panel.h"

#include "viewer/window.h"

namespace vksd::view {

void LatentImages::ensure(Context& ctx, ImGuiRenderer& r, Window& w, int channels, int lh, int lw) {
  if (preview_ && channels == channels_ && lh == lh_ && lw == lw_) return;
  release(w);
  channels_ = channels, lh_ = lh, lw_ = lw;
  preview_ = std::make_unique<LatentPreview>(ctx, channels, lh, lw, Window::kFramesInFlight * count_);
  for (int k = 0; k < count_; ++k) textures_.push_back(std::make_unique<Texture>(ctx, r, lw, lh, true));
  shown_.assign((size_t)count_, false);
}

void LatentImages::show(VkCommandBuffer cmd, int frame_slot, int k, const std::vector<float>& latent,
                        const LatentRgbMap& map, float scale) {
  const int slot = frame_slot * count_ + k;
  preview_->record(cmd, slot, latent.data(), map, scale);
  textures_[(size_t)k]->record_copy_from(cmd, preview_->output_buffer(), preview_->output_offset(slot));
  shown_[(size_t)k] = true;
}

ImVec4 LatentImages::draw(int k, const char* caption, ImVec2 size) const {
  ImGui::BeginGroup();
  ImGui::TextUnformatted(caption);
  if (shown(k)) ImGui::Image(id(k), size);
  else ImGui::Dummy(size);
  const ImVec4 r = item_fb_rect();
  ImGui::EndGroup();
  return r;
}

void LatentImages::release(Window& w) {
  if (!preview_ && textures_.empty()) return;
  w.wait_frames();
  textures_.clear();
  preview_.reset();
  shown_.clear();
}

}  // namespace vksd::view
