// The left panel: model, prompt, sampling settings, image-to-image and inpainting, and the
// run buttons (Generate, Pause/Resume, Step, Cancel) with their keyboard shortcuts.
#include <GLFW/glfw3.h>
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>

#include "runtime/diffusion/rng.h"
#include "viewer/app.h"

namespace vksd::view {

static void help_marker(const char* text) {
  ImGui::SameLine();
  ImGui::TextDisabled("(?)");
  if (ImGui::IsItemHovered()) {
    ImGui::BeginTooltip();
    ImGui::PushTextWrapPos(ImGui::GetFontSize() * 30.0f);
    ImGui::TextUnformatted(text);
    ImGui::PopTextWrapPos();
    ImGui::EndTooltip();
  }
}

void ViewerApp::ui_controls() {
  const bool loading = loading_.valid();
  const JobState st = job_ ? job_->state() : JobState::Idle;
  const bool active = st == JobState::Running || st == JobState::Paused;

  // -- model
  ImGui::TextUnformatted("Model");
  ImGui::SetNextItemWidth(-70);
  ImGui::InputTextWithHint("##model", "demo model (weights/demo)", &model_path_);
  ImGui::SameLine();
  ImGui::BeginDisabled(loading || active);
  if (ImGui::Button("Load")) start_loading();
  ImGui::EndDisabled();
  ImGui::SetNextItemWidth(-70);
  ImGui::InputTextWithHint("##vocab", "vocabulary (optional)", &vocab_path_);
  if (loading) ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "loading the model ...");
  else if (pipe_) ImGui::TextDisabled("%s", pipe_->model_name().c_str());
  else ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "no model loaded");
  ImGui::Separator();

  // -- prompt
  ImGui::TextUnformatted("Prompt");
  help_marker("What the image should show. (word) or (word:1.3) gives a word more weight, [word] less; "
              "BREAK starts a new 75-token chunk (the same syntax as vksd generate and AUTOMATIC1111).");
  ImGui::InputTextMultiline("##prompt", &prompt_, ImVec2(-1, ImGui::GetTextLineHeight() * 4));
  ImGui::TextUnformatted("Negative prompt");
  help_marker("What it should not show: guidance steers away from this instead of from the empty prompt.");
  ImGui::InputTextMultiline("##negative", &negative_, ImVec2(-1, ImGui::GetTextLineHeight() * 2.5f));

  // -- settings
  ImGui::PushItemWidth(170);
  ImGui::InputScalar("seed", ImGuiDataType_S64, &seed_);
  if (seed_ < -1) seed_ = -1;
  ImGui::SameLine();
  if (ImGui::Button("Randomise")) seed_ = (long long)(random_seed() & 0xffffffffull);
  help_marker("The starting noise. -1 picks a random seed for every run; the seed used is shown in the status bar.");
  ImGui::SliderInt("steps", &steps_, 1, 150);
  const char* current = sampler_names_[(size_t)sampler_].c_str();
  if (ImGui::BeginCombo("sampler", current)) {
    for (size_t i = 0; i < sampler_names_.size(); ++i)
      if (ImGui::Selectable(sampler_names_[i].c_str(), (int)i == sampler_)) sampler_ = (int)i;
    ImGui::EndCombo();
  }
  ImGui::SliderFloat("guidance", &cfg_, 0.f, 20.f, "%.1f");
  help_marker("Classifier-free guidance scale: eps = eps_uncond + s (eps_cond - eps_uncond). "
              "1 turns it off (one UNet pass per step); 5-9 is usual.");
  const int m = pipe_ ? pipe_->size_multiple() : 8;
  const int max_side = pipe_ ? std::max(2048, pipe_->config().sample_size * 2) : 2048;
  if (ImGui::InputInt("width", &width_, m, m * 4)) width_ = std::clamp(width_ / m * m, m, max_side);
  if (ImGui::InputInt("height", &height_, m, m * 4)) height_ = std::clamp(height_ / m * m, m, max_side);
  ImGui::SameLine();
  ImGui::TextDisabled("x%d", m);
  const int layers = pipe_ ? pipe_->config().clip.used_layers() : 12;  // SD 2.x: the last layer is not used
  ImGui::SliderInt("clip skip", &clip_skip_, 1, layers);
  ImGui::Combo("preview", &preview_mode_, "linear (GPU, every step)\0VAE decoder every N steps\0");
  if (preview_mode_ == 1) ImGui::SliderInt("N", &vae_every_, 1, 20);
  ImGui::PopItemWidth();

  // -- image to image
  ImGui::Separator();
  ImGui::Checkbox("img2img: start from an image", &use_init_);
  if (use_init_) {
    ImGui::SetNextItemWidth(-70);
    ImGui::InputTextWithHint("##init", "image file (PNG, JPEG, ...)", &init_path_);
    ImGui::SameLine();
    if (ImGui::Button("Load##init")) load_init_image();
    if (!init_error_.empty()) ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", init_error_.c_str());
    ImGui::SetNextItemWidth(170);
    ImGui::SliderFloat("strength", &strength_, 0.f, 1.f, "%.2f");
    ImGui::Checkbox("inpaint: paint a mask on the image", &use_mask_);
    if (use_mask_) {
      ImGui::SetNextItemWidth(120);
      ImGui::SliderFloat("brush", &brush_, 1.f, 64.f, "%.0f px");
      ImGui::SameLine();
      if (ImGui::Button("Clear")) std::fill(mask_.pixels.begin(), mask_.pixels.end(), 0), mask_dirty_ = true;
      ImGui::SameLine();
      if (ImGui::Button("Invert")) {
        for (auto& v : mask_.pixels) v = (uint8_t)(255 - v);
        mask_dirty_ = true;
      }
      ImGui::TextDisabled("left button paints (repaint), right button erases");
    }
  }

  // -- run
  ImGui::Separator();
  ImGui::BeginDisabled(!pipe_ || active || loading);
  if (ImGui::Button("Generate", ImVec2(110, 0))) generate();
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::BeginDisabled(!active);
  if (ImGui::Button(st == JobState::Paused ? "Resume" : "Pause", ImVec2(70, 0))) pause_resume();
  ImGui::SameLine();
  ImGui::BeginDisabled(st != JobState::Paused);
  if (ImGui::Button("Step", ImVec2(50, 0))) step_once();
  ImGui::EndDisabled();
  ImGui::SameLine();
  if (ImGui::Button("Cancel", ImVec2(60, 0))) cancel();
  ImGui::EndDisabled();
  ImGui::TextDisabled("Ctrl+Enter generate, Space pause/resume,\nRight step, Esc cancel");
  if (!message_.empty()) ImGui::TextWrapped("%s", message_.c_str());
  ImGui::Separator();
  ui_panel_menu();
}

// Shortcuts act when no text field has the keyboard.
void ViewerApp::shortcuts() {
  ImGuiIO& io = ImGui::GetIO();
  if (io.KeyCtrl && ImGui::IsKeyPressed(GLFW_KEY_ENTER, false)) generate();
  if (io.WantTextInput) return;
  if (ImGui::IsKeyPressed(GLFW_KEY_SPACE, false)) pause_resume();
  if (ImGui::IsKeyPressed(GLFW_KEY_RIGHT, true)) step_once();
  if (ImGui::IsKeyPressed(GLFW_KEY_ESCAPE, false)) cancel();
}

void ViewerApp::load_init_image() {
  init_error_.clear();
  try {
    Image img = read_image(init_path_, 3);
    const int m = pipe_ ? pipe_->size_multiple() : 8;
    if (img.width % m || img.height % m)
      fail("the image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
           "; this model needs sides that are multiples of " + std::to_string(m));
    init_image_ = std::move(img);
    width_ = init_image_->width, height_ = init_image_->height;
    mask_ = Image(width_, height_, 1);
    if (!opts_.mask.empty()) {
      Image mk = read_image(opts_.mask, 1);
      if (mk.width != width_ || mk.height != height_) fail("the mask must be the size of the image");
      mask_ = std::move(mk);
      use_mask_ = true;
    }
    mask_dirty_ = true;
  } catch (const std::exception& e) {
    init_image_.reset();
    init_error_ = e.what();
  }
}

}  // namespace vksd::view
