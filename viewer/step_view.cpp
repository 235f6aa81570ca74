#include "viewer/step_view.h"

#include <cmath>

#include "runtime/diffusion/generation_job.h"
#include "viewer/window.h"

namespace vksd::view {

// Two previews (x_t and x̂0) per frame slot.
static constexpr int kPreviewsPerFrame = 2;

StepView::StepView(Context& ctx, ImGuiRenderer& r, int channels, int lh, int lw, int width, int height, bool smooth)
    : channels_(channels), lh_(lh), lw_(lw), width_(width), height_(height), smooth_(smooth),
      preview_(ctx, channels, lh, lw, Window::kFramesInFlight * kPreviewsPerFrame),
      xt_(ctx, r, lw, lh, !smooth), x0_(ctx, r, lw, lh, !smooth), decoded_(ctx, r, width, height, true) {}

bool StepView::fits(int channels, int lh, int lw, int width, int height, bool smooth) const {
  return channels == channels_ && lh == lh_ && lw == lw_ && width == width_ && height == height_ && smooth == smooth_;
}

void StepView::show_step(VkCommandBuffer cmd, int frame_slot, const StepRecord& s, const LatentRgbMap& map) {
  const int base = frame_slot * kPreviewsPerFrame;
  // x = signal * x0 + noise * eps: dividing by the norm of (signal, noise) keeps x_t at unit
  // variance, so the picture shows the mixture rather than a washed-out sigma-scaled blob.
  const float xt_scale = (float)(1.0 / std::hypot(s.x_signal, s.x_noise));
  preview_.record(cmd, base, s.x.data(), map, xt_scale);
  preview_.record(cmd, base + 1, s.denoised.data(), map, 1.f);
  xt_.record_copy_from(cmd, preview_.output_buffer(), preview_.output_offset(base));
  x0_.record_copy_from(cmd, preview_.output_buffer(), preview_.output_offset(base + 1));
}

void StepView::show_decoded(VkCommandBuffer cmd, int frame_slot, const Image& img) {
  decoded_.upload(cmd, frame_slot, img);
  decoded_shown_ = true;
}

}  // namespace vksd::view
