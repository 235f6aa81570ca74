// The status bar (device, model, dtype, progress, speed, device memory, frame time) and the
// error panel shown when a model fails to load (the window stays usable: fix the path, Load).

#include <cstdio>

#include "runtime/gpu/context.h"
#include "viewer/app.h"
#include "viewer/window.h"

namespace vksd::view {

static std::string mib(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.0f MiB", (double)bytes / (1 << 20));
  return b;
}

void ViewerApp::ui_status() {
  ImGui::Separator();
  const DeviceInfo& d = ctx_.info();
  ImGui::Text("%s (%s)", d.name.c_str(), d.driver.c_str());
  ImGui::SameLine(0, 20);
  if (pipe_)  // "lowvram": one network on the GPU at a time (asked for, or switched on for memory)
    ImGui::Text("%s  %s%s", pipe_->model_name().c_str(), dtype_name(pipe_->dtype()), pipe_->lowvram() ? "  lowvram" : "");
  else ImGui::TextDisabled(loading_.valid() ? "loading model" : "no model");
  ImGui::SameLine(0, 20);
  if (job_) {
    const JobProgress p = job_->progress();
    ImGui::Text("%s", job_state_name(p.state));
    ImGui::SameLine();
    if (p.steps_total > 0) {
      ImGui::Text("step %d/%d  %.2f it/s  ETA %.1f s", p.steps_done, p.steps_total, p.it_per_s, p.eta_s);
      ImGui::SameLine();
    }
    if (p.state == JobState::Running && !p.stage.empty() && p.stage != "sample") {
      ImGui::TextDisabled("(%s)", p.stage.c_str());
      ImGui::SameLine();
    }
    if (p.state == JobState::Failed) {
      ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", p.error.c_str());
      ImGui::SameLine();
    } else if (!p.notice.empty()) {
      // The runtime's notices are sentences written for a terminal: too long for this bar.
      ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "(note: hover)");
      if (ImGui::IsItemHovered()) ImGui::SetTooltip("%s", p.notice.c_str());
      ImGui::SameLine();
    }
    if (last_seed_ && p.state != JobState::Idle) ImGui::Text("seed %llu", (unsigned long long)last_seed_);
  }
  // Device memory by what it holds (the runtime counts every buffer; the viewer adds its own).
  std::string mem;
  for (auto& [cat, bytes] : ctx_.memory_in_use()) mem += (mem.empty() ? "" : " / ") + cat + " " + mib(bytes);
  ImGui::Text("device memory: %s", mem.empty() ? "none" : mem.c_str());
  ImGui::SameLine(0, 20);
  ImGui::TextDisabled("frame %.1f ms", win_.last_frame_ms());
}

void ViewerApp::ui_error_panel() {
  error_rect_ = ImVec4(0, 0, 0, 0);
  if (model_error_.empty() || !error_panel_open_) return;
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(ImVec2(vp->Pos.x + vp->Size.x * 0.5f, vp->Pos.y + vp->Size.y * 0.4f), ImGuiCond_Always,
                          ImVec2(0.5f, 0.5f));
  ImGui::SetNextWindowSize(ImVec2(560, 0));
  ImGui::PushStyleColor(ImGuiCol_TitleBg, ImVec4(0.75f, 0.1f, 0.1f, 1));
  ImGui::PushStyleColor(ImGuiCol_TitleBgActive, ImVec4(0.75f, 0.1f, 0.1f, 1));
  if (ImGui::Begin("The model failed to load", &error_panel_open_,
                   ImGuiWindowFlags_NoCollapse | ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoMove)) {
    ImGui::TextWrapped("%s", model_error_.c_str());
    ImGui::Spacing();
    ImGui::TextWrapped("Give another model path in the panel on the left and press Load, or leave it empty for "
                       "the embedded demo model.");
    if (ImGui::Button("OK")) error_panel_open_ = false;
    const ImVec2 s = ImGui::GetIO().DisplayFramebufferScale;
    const ImVec2 a = ImGui::GetWindowPos(), sz = ImGui::GetWindowSize();
    error_rect_ = ImVec4(a.x * s.x, a.y * s.y, (a.x + sz.x) * s.x, (a.y + sz.y) * s.y);
  }
  ImGui::End();
  ImGui::PopStyleColor(2);
}

}  // namespace vksd::view
