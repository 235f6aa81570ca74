// PlotArea: a small 2-D line plot drawn with ImGui's draw list for the teaching panels — a framed
// data area with grid lines and numbered ticks (linear or log10 axes), lines, dots, vertical
// markers and a legend. It occupies `size` at the cursor like any ImGui item.
#pragma once
#include <imgui.h>

#include <string>
#include <utility>
#include <vector>

namespace vksd::view {

class PlotArea {
 public:
  struct Axis {
    double lo = 0, hi = 1;
    bool log = false;       // log10 scale (lo, hi > 0)
    const char* label = "";  // under the x axis / above the y axis
  };
  // Reserves `size` (screen pixels) at the cursor and draws the frame, grid and tick labels.
  PlotArea(const char* title, ImVec2 size, Axis x, Axis y);

  float px(double x) const;  // data -> screen
  float py(double y) const;
  void line(const std::vector<double>& x, const std::vector<double>& y, ImU32 col, float thickness = 2.f) const;
  void dot(double x, double y, ImU32 col, float radius = 4.f) const;
  void vline(double x, ImU32 col, float thickness = 1.f) const;
  void hline(double y, ImU32 col, float thickness = 1.f, const char* label = nullptr) const;
  void xtick(double x, ImU32 col, float length = 8.f) const;  // up from the x axis
  // A text tag beside a vertical marker at x (on the side with room), at the top of the data area.
  void tag(double x, ImU32 col, const char* text) const;
  // Colour swatches and names, in a row at the top right of the data area.
  void legend(const std::vector<std::pair<std::string, ImU32>>& items) const;

  ImVec2 data_min() const { return a_; }  // the data area, screen pixels
  ImVec2 data_max() const { return b_; }
  ImVec4 fb_rect() const;  // the whole plot, framebuffer pixels

 private:
  double tx(double x) const;
  double ty(double y) const;
  ImDrawList* dl_;
  Axis x_, y_;
  ImVec2 item_min_, item_max_, a_, b_;
};

// Plot colours shared by the panels (readable on ImGui's dark background).
namespace plot_colors {
constexpr ImU32 kBlue = IM_COL32(90, 170, 255, 255);
constexpr ImU32 kOrange = IM_COL32(255, 160, 60, 255);
constexpr ImU32 kGreen = IM_COL32(110, 210, 120, 255);
constexpr ImU32 kPink = IM_COL32(240, 110, 170, 255);
constexpr ImU32 kMarker = IM_COL32(255, 220, 70, 255);
constexpr ImU32 kTick = IM_COL32(200, 200, 210, 200);
constexpr ImU32 kDim = IM_COL32(150, 150, 160, 255);
}  // namespace plot_colors

}  // namespace vksd::view
