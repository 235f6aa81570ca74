// StepView: what the canvas shows for one step, as GPU textures. The runtime's LatentPreview
// turns the step's latents into RGBA8 with a compute dispatch recorded into the frame's own
// command buffer, and the texture copies them from there: no per-step image crosses the CPU.
// Decoded images (the VAE preview every N steps, the final image) arrive from the job as host
// pixels and are uploaded once each.
#pragma once
#include <memory>

#include "runtime/io/image_io.h"
#include "runtime/diffusion/preview.h"
#include "viewer/texture.h"

namespace vksd {
class Context;
struct StepRecord;
}  // namespace vksd

namespace vksd::view {

class ImGuiRenderer;

class StepView {
 public:
  // Latent geometry channels x lh x lw; decoded images are width x height. `smooth`: the latent
  // previews (one texel per latent pixel, 8x8 image pixels each) are drawn with bilinear
  // filtering instead of as blocks; decoded images are always nearest-neighbour.
  StepView(Context& ctx, ImGuiRenderer& r, int channels, int lh, int lw, int width, int height, bool smooth);
  bool fits(int channels, int lh, int lw, int width, int height, bool smooth) const;

  // Records the linear previews of s.x (scaled to unit variance so the noise stays visible) and
  // s.denoised into cmd; `frame_slot` from Window::begin_frame.
  void show_step(VkCommandBuffer cmd, int frame_slot, const StepRecord& s, const LatentRgbMap& map);
  // Uploads a decoded image (VAE preview or final image) shown instead of the linear x̂0.
  void show_decoded(VkCommandBuffer cmd, int frame_slot, const Image& img);
  void hide_decoded() { decoded_shown_ = false; }

  ImTextureID xt() const { return xt_.id(); }
  ImTextureID x0() const { return decoded_shown_ ? decoded_.id() : x0_.id(); }
  bool decoded_shown() const { return decoded_shown_; }
  int width() const { return width_; }
  int latent_width() const { return lw_; }
  int latent_height() const { return lh_; }
  int height() const { return height_; }

 private:
  int channels_, lh_, lw_, width_, height_;
  bool smooth_;
  LatentPreview preview_;
  Texture xt_, x0_, decoded_;
  bool decoded_shown_ = false;
};

}  // namespace vksd::view
