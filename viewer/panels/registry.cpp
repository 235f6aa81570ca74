// The teaching panels, in the order the viewer lists them. Each panel's factory lives in its own
// file (viewer/panels/<name>_panel.cpp). The declarations are weak so that the viewer links
// while a panel is being written; tests/test_viewer_panels.cpp requires all of them.
#include "viewer/panels/panel.h"

namespace vksd::view {

#define VKSD_PANELS(X) X(tokens) X(latent) X(schedule) X(attention) X(guidance) X(compare) X(forward) X(hood)

#define DECLARE_PANEL(name) __attribute__((weak)) std::unique_ptr<Panel> make_##name##_panel();
VKSD_PANELS(DECLARE_PANEL)

std::vector<std::unique_ptr<Panel>> make_panels() {
  std::vector<std::unique_ptr<Panel>> r;
#define ADD_PANEL(name) \
  if (make_##name##_panel) r.push_back(make_##name##_panel());
  VKSD_PANELS(ADD_PANEL)
  return r;
}

std::vector<std::string> panel_names() {
  std::vector<std::string> r;
  for (auto& p : make_panels()) r.push_back(p->name());
  return r;
}

}  // namespace vksd::view
