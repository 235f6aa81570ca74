#include "viewer/panels/panel.h"

namespace vksd::view {

void Panel::explanation(const char* text) {
  ImGui::Checkbox("what am I looking at?", &explain);
  if (!explain) return;
  ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.75f, 0.85f, 1.f, 1.f));
  ImGui::TextWrapped("%s", text);
  ImGui::PopStyleColor();
  ImGui::Separator();
}

}  // namespace vksd::view
