// The canvas: x̂0 (the model's current guess of the clean image) beside x_t (what the sampler
// holds, noise included), at the image's size times an integer zoom with nearest-neighbour
// sampling, so a 64x64 demo image stays crisp. With inpainting on, the init image is shown too
// and the mask is painted on it with the mouse.
#include <algorithm>
#include <cmath>

#include "viewer/app.h"
#include "viewer/panels/panel.h"
#include "viewer/window.h"

namespace vksd::view {

void ViewerApp::ui_canvas(VkCommandBuffer cmd, int frame_slot) {
  const bool masking = use_init_ && use_mask_ && init_image_ && mask_tex_;
  const int panels = masking ? 3 : 2;
  const int W = view_ ? view_->width() : width_, H = view_ ? view_->height() : height_;
  ImGui::SetNextItemWidth(120);
  ImGui::SliderInt("zoom", &zoom_, 0, 16, zoom_ == 0 ? "fit" : "%dx");
  ImGui::SameLine();
  ImGui::Checkbox("smooth latent previews", &smooth_);
  if (view_ && !view_->decoded_shown()) {
    ImGui::SameLine();
    ImGui::TextDisabled("latent %dx%d: each latent pixel covers %dx%d image pixels", view_->latent_width(),
                        view_->latent_height(), W / view_->latent_width(), H / view_->latent_height());
  }
  if (W <= 0 || H <= 0) return;
  const ImVec2 avail = ImGui::GetContentRegionAvail();
  const float label_h = ImGui::GetTextLineHeightWithSpacing();
  const float gap = ImGui::GetStyle().ItemSpacing.x;
  int z = zoom_;
  if (z == 0) {
    const float fit_w = (avail.x - gap * (float)(panels - 1)) / (float)(W * panels);
    const float fit_h = (avail.y - label_h) / (float)H;
    z = std::max(1, (int)std::floor(std::min(fit_w, fit_h)));
    // Images larger than the canvas are shown scaled down (not integer); the scroll bars cover zoom > fit.
  }
  float scale = (float)z;
  if (zoom_ == 0) {
    const float fit = std::min((avail.x - gap * (float)(panels - 1)) / (float)(W * panels), (avail.y - label_h) / (float)H);
    if (fit < 1.f) scale = std::max(fit, 0.05f);
  }
  const ImVec2 size((float)W * scale, (float)H * scale);

  auto panel = [&](const char* title, ImTextureID tex, ImVec4* rect) {
    ImGui::BeginGroup();
    ImGui::TextUnformatted(title);
    if (tex) {
      ImGui::Image(tex, size);
    } else {
      ImGui::Dummy(size);
      ImGui::GetWindowDrawList()->AddRect(ImGui::GetItemRectMin(), ImGui::GetItemRectMax(), IM_COL32(90, 90, 90, 255));
    }
    *rect = item_fb_rect();
    ImGui::EndGroup();
  };

  if (masking) {
    panel("init image + mask (paint here)", mask_tex_->id(), &mask_rect_);
    // Paint where the mouse is over the image: left button repaints, right button keeps.
    const ImVec4& r = mask_rect_;
    const ImVec2 fbs = ImGui::GetIO().DisplayFramebufferScale;
    const ImVec2 mp = ImGui::GetIO().MousePos;
    const float ix = (mp.x * fbs.x - r.x) / (r.z - r.x) * (float)W, iy = (mp.y * fbs.y - r.y) / (r.w - r.y) * (float)H;
    if (ImGui::IsWindowHovered() && ix >= 0 && iy >= 0 && ix < (float)W && iy < (float)H) {
      if (ImGui::IsMouseDown(ImGuiMouseButton_Left)) paint_mask(ix, iy, false);
      if (ImGui::IsMouseDown(ImGuiMouseButton_Right)) paint_mask(ix, iy, true);
      ImGui::GetWindowDrawList()->AddCircle(mp, brush_ * scale, IM_COL32(255, 255, 255, 200));
    }
    ImGui::SameLine();
  }
  const bool decoded = view_ && view_->decoded_shown();
  panel(decoded ? "x0-hat (VAE decoder)" : "x0-hat: the model's guess of the clean image", view_ ? view_->x0() : nullptr,
        &x0_rect_);
  ImGui::SameLine();
  panel("x_t: the sampler's latent, noise included", view_ ? view_->xt() : nullptr, &xt_rect_);
  (void)cmd, (void)frame_slot;
}

void ViewerApp::paint_mask(float ix, float iy, bool erase) {
  const int r = (int)std::ceil(brush_);
  for (int y = std::max(0, (int)iy - r); y <= std::min(mask_.height - 1, (int)iy + r); ++y)
    for (int x = std::max(0, (int)ix - r); x <= std::min(mask_.width - 1, (int)ix + r); ++x) {
      const float dx = (float)x + 0.5f - ix, dy = (float)y + 0.5f - iy;
      if (dx * dx + dy * dy <= brush_ * brush_) *mask_.at(x, y) = erase ? 0 : 255;
    }
  mask_dirty_ = true;
}

// The init image with the mask over it in translucent red, uploaded when either changes.
void ViewerApp::update_mask_texture(VkCommandBuffer cmd, int frame_slot) {
  if (!init_image_) {
    if (mask_tex_) {
      win_.wait_frames();
      mask_tex_.reset();
    }
    return;
  }
  const Image& im = *init_image_;
  if (mask_tex_ && (mask_tex_->width() != im.width || mask_tex_->height() != im.height)) {
    win_.wait_frames();
    mask_tex_.reset();
  }
  if (!mask_tex_) {
    mask_tex_ = std::make_unique<Texture>(ctx_, renderer_, im.width, im.height, true);
    mask_dirty_ = true;
  }
  if (!mask_dirty_) return;
  Image over(im.width, im.height, 4);
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width; ++x) {
      const float a = use_mask_ ? (float)*mask_.at(x, y) / 255.f * 0.55f : 0.f;
      const uint8_t* s = im.at(x, y);
      uint8_t* d = over.at(x, y);
      d[0] = (uint8_t)std::lround(s[0] * (1 - a) + 255 * a);
      d[1] = (uint8_t)std::lround(s[1] * (1 - a));
      d[2] = (uint8_t)std::lround(s[2] * (1 - a));
      d[3] = 255;
    }
  mask_tex_->upload(cmd, frame_slot, over);
  mask_dirty_ = false;
}

}  // namespace vksd::view
