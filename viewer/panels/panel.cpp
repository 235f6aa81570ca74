#include "viewer/panels/panel.h"

#include <cstdio>

namespace vksd::view {

ImVec4 fb_rect(ImVec2 a, ImVec2 b) {
  const ImVec2 s = ImGui::GetIO().DisplayFramebufferScale;
  return ImVec4(a.x * s.x, a.y * s.y, b.x * s.x, b.y * s.y);
}

ImVec4 item_fb_rect() { return fb_rect(ImGui::GetItemRectMin(), ImGui::GetItemRectMax()); }

bool mouse_used() {
  static bool moved = false;
  const ImVec2 d = ImGui::GetIO().MouseDelta;
  moved = moved || d.x != 0 || d.y != 0;
  return moved;
}

std::string json_rect(const ImVec4& r) {
  char b[96];
  std::snprintf(b, sizeof b, "[%d, %d, %d, %d]", (int)r.x, (int)r.y, (int)r.z, (int)r.w);
  return b;
}

void Panel::explanation(const char* text) {
  ImGui::Checkbox("what am I looking at?", &explain);
  if (!explain) return;
  ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.75f, 0.85f, 1.f, 1.f));
  ImGui::TextWrapped("%s", text);
  ImGui::PopStyleColor();
  ImGui::Separator();
}

}  // namespace vksd::view
