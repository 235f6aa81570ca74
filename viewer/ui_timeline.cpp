// The timeline: every step's latents are kept by the job, so the slider moves back and forth
// through the run (during it too), Play animates it, and Export writes an animated GIF of the
// steps or the final PNG with the same 'parameters' text as vksd generate.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>

#include "runtime/io/gif_writer.h"
#include "runtime/diffusion/preview.h"
#include "viewer/app.h"

namespace vksd::view {

void ViewerApp::ui_timeline() {
  const int n = job_ ? job_->steps_recorded() : 0;
  const int total = job_ && n ? job_->record_ptr(0)->count : steps_;
  const int first = job_ && n ? job_->record_ptr(0)->index : 0;
  if (n == 0) {
    ImGui::TextDisabled("timeline: generate to fill it (every step is kept, so you can scrub back and forth)");
  } else {
    int pos = shown_step_ + 1;
    ImGui::SetNextItemWidth(-330);
    char fmt[64];
    std::snprintf(fmt, sizeof fmt, "step %%d of %d", n);
    if (ImGui::SliderInt("##timeline", &pos, 1, n, fmt)) {
      shown_step_ = pos - 1;
      live_ = false;
      playing_ = false;
    }
    ImGui::SameLine();
    if (ImGui::Checkbox("live", &live_) && live_) playing_ = false;
    ImGui::SameLine();
    if (ImGui::Button(playing_ ? "Stop" : "Play", ImVec2(50, 0))) {
      playing_ = !playing_;
      live_ = false;
      play_clock_ = 0;
    }
    ImGui::SameLine();
    ImGui::SetNextItemWidth(100);
    ImGui::SliderFloat("fps", &play_fps_, 1.f, 30.f, "%.0f fps");
    auto rec = job_->record_ptr(std::clamp(shown_step_, 0, n - 1));
    ImGui::Text("step %d of the %d-step schedule: t = %.1f, sigma = %.4f, x = %.3f x0 + %.3f eps   (%.0f ms)",
                rec->index + 1, total, rec->t, rec->sigma, rec->x_signal, rec->x_noise, rec->step_ms);
    (void)first;
  }
  ImGui::TextDisabled("kept: %.2f MiB of latents on the host (x, x0-hat and the noise predictions of every step)",
                      job_ ? (double)job_->timeline_bytes() / (1 << 20) : 0.0);

  // Export.
  const bool done = job_ && job_->state() == JobState::Done;
  ImGui::BeginDisabled(n == 0);
  if (ImGui::Button("Export GIF")) export_gif(gif_path_);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(200);
  ImGui::InputText("##gif", &gif_path_);
  ImGui::SameLine();
  ImGui::Checkbox("x0-hat", &gif_x0_);
  ImGui::SameLine();
  ImGui::Checkbox("x_t", &gif_xt_);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(80);
  ImGui::SliderInt("gif fps", &gif_fps_, 1, 30);
  ImGui::EndDisabled();
  ImGui::SameLine(0, 30);
  ImGui::BeginDisabled(!done);
  if (ImGui::Button("Export PNG")) export_png(png_path_);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(200);
  ImGui::InputText("##png", &png_path_);
  ImGui::EndDisabled();
}

// One GIF frame per recorded step: x_t and/or x̂0 side by side at the image's size (the linear
// preview, or the final image on the last step of a finished run).
void ViewerApp::export_gif(const std::string& path) {
  try {
    if (!job_ || job_->steps_recorded() == 0) fail("nothing to export yet");
    if (!gif_x0_ && !gif_xt_) fail("choose x0-hat, x_t or both for the GIF");
    const int n = job_->steps_recorded();
    auto first = job_->record_ptr(0);
    const int f = pipe_->config().vae.downsample_factor();
    LatentPreview lp(ctx_, first->channels, first->height, first->width, 1);
    auto result = job_->result();
    std::vector<Image> frames;
    for (int k = 0; k < n; ++k) {
      auto r = job_->record_ptr(k);
      std::vector<Image> parts;
      if (gif_xt_) {
        const float s = (float)(1.0 / std::hypot(r->x_signal, r->x_noise));
        parts.push_back(upscale_nearest(lp.render(r->x, pipe_->config().preview, s), f));
      }
      if (gif_x0_) {
        if (result && k == n - 1) parts.push_back(result->image);
        else parts.push_back(upscale_nearest(lp.render(r->denoised, pipe_->config().preview), f));
      }
      frames.push_back(parts.size() == 1 ? parts[0] : contact_sheet(parts, (int)parts.size(), 0));
    }
    write_gif(path, frames, std::max(1, 100 / std::max(1, gif_fps_)));
    message_ = "wrote " + path + " (" + std::to_string(frames.size()) + " frames)";
  } catch (const std::exception& e) {
    message_ = std::string("error: ") + e.what();
  }
}

void ViewerApp::export_png(const std::string& path) {
  try {
    auto res = job_ ? job_->result() : std::nullopt;
    if (!res) fail("no finished image to export");
    write_png(path, res->image, {{"parameters", res->parameters}});
    message_ = "wrote " + path;
  } catch (const std::exception& e) {
    message_ = std::string("error: ") + e.what();
  }
}

}  // namespace vksd::view
