#include "viewer/panels/panel.h"

#include <cstdio>

namespace vksd::view {

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
