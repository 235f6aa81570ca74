#include "viewer/panels/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace vksd::view {

namespace {

constexpr float kLeft = 54, kRight = 10, kTop = 20, kBottom = 34;
constexpr ImU32 kBg = IM_COL32(24, 26, 32, 255), kFrame = IM_COL32(110, 110, 120, 255),
                kGrid = IM_COL32(60, 62, 72, 255), kText = IM_COL32(215, 215, 222, 255);

// "Nice" tick positions for a linear axis: about `want` ticks at 1, 2 or 5 x 10^k.
std::vector<double> linear_ticks(double lo, double hi, int want) {
  std::vector<double> r;
  if (!(hi > lo)) return r;
  const double raw = (hi - lo) / want, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) r.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return r;
}

std::string tick_label(double v, bool log) {
  char b[32];
  if (log) {
    const int e = (int)std::lround(std::log10(v));
    if (e >= -2 && e <= 3) std::snprintf(b, sizeof b, "%g", std::pow(10.0, e));
    else std::snprintf(b, sizeof b, "1e%d", e);
  } else {
    std::snprintf(b, sizeof b, "%g", v);
  }
  return b;
}

}  // namespace

PlotArea::PlotArea(const char* title, ImVec2 size, Axis x, Axis y) : x_(x), y_(y) {
  if (x_.log) x_.lo = std::max(x_.lo, 1e-300), x_.hi = std::max(x_.hi, x_.lo * 10);
  if (y_.log) y_.lo = std::max(y_.lo, 1e-300), y_.hi = std::max(y_.hi, y_.lo * 10);
  if (!(x_.hi > x_.lo)) x_.hi = x_.lo + 1;
  if (!(y_.hi > y_.lo)) y_.hi = y_.lo + 1;
  dl_ = ImGui::GetWindowDrawList();
  item_min_ = ImGui::GetCursorScreenPos();
  ImGui::Dummy(size);
  item_max_ = ImVec2(item_min_.x + size.x, item_min_.y + size.y);
  a_ = ImVec2(item_min_.x + kLeft, item_min_.y + kTop);
  b_ = ImVec2(item_max_.x - kRight, item_max_.y - kBottom);
  dl_->AddRectFilled(a_, b_, kBg);
  dl_->AddText(ImVec2(item_min_.x, item_min_.y + 1), kText, title);

  // Grid and tick labels.
  const float fh = ImGui::GetFontSize();
  auto ticks = [](const Axis& ax, int want) {
    std::vector<double> r;
    if (!ax.log) return linear_ticks(ax.lo, ax.hi, want);
    const int e0 = (int)std::ceil(std::log10(ax.lo) - 1e-9), e1 = (int)std::floor(std::log10(ax.hi) + 1e-9);
    const int every = std::max(1, (e1 - e0 + 1 + want - 1) / want);
    for (int e = e0; e <= e1; ++e)
      if ((e - e0) % every == 0) r.push_back(std::pow(10.0, e));
    return r;
  };
  for (double v : ticks(x_, std::max(2, (int)((b_.x - a_.x) / 90)))) {
    const float sx = px(v);
    dl_->AddLine(ImVec2(sx, a_.y), ImVec2(sx, b_.y), kGrid);
    const std::string s = tick_label(v, x_.log);
    const float w = ImGui::CalcTextSize(s.c_str()).x;
    dl_->AddText(ImVec2(std::clamp(sx - w / 2, a_.x - 8, b_.x - w), b_.y + 2), kText, s.c_str());
  }
  for (double v : ticks(y_, std::max(2, (int)((b_.y - a_.y) / 34)))) {
    const float sy = py(v);
    dl_->AddLine(ImVec2(a_.x, sy), ImVec2(b_.x, sy), kGrid);
    const std::string s = tick_label(v, y_.log);
    const float w = ImGui::CalcTextSize(s.c_str()).x;
    dl_->AddText(ImVec2(a_.x - 4 - w, std::clamp(sy - fh / 2, a_.y - fh / 2, b_.y - fh / 2)), kText, s.c_str());
  }
  if (x_.label && *x_.label) {
    const float w = ImGui::CalcTextSize(x_.label).x;
    dl_->AddText(ImVec2((a_.x + b_.x - w) / 2, b_.y + 2 + fh), kText, x_.label);
  }
  if (y_.label && *y_.label) dl_->AddText(ImVec2(item_min_.x + ImGui::CalcTextSize(title).x + 12, item_min_.y + 1), plot_colors::kDim, y_.label);
  dl_->AddRect(a_, b_, kFrame);
}

double PlotArea::tx(double x) const {
  return x_.log ? (std::log10(x) - std::log10(x_.lo)) / (std::log10(x_.hi) - std::log10(x_.lo)) : (x - x_.lo) / (x_.hi - x_.lo);
}
double PlotArea::ty(double y) const {
  return y_.log ? (std::log10(y) - std::log10(y_.lo)) / (std::log10(y_.hi) - std::log10(y_.lo)) : (y - y_.lo) / (y_.hi - y_.lo);
}
float PlotArea::px(double x) const { return a_.x + (float)(tx(x) * (b_.x - a_.x)); }
float PlotArea::py(double y) const { return b_.y - (float)(ty(y) * (b_.y - a_.y)); }

void PlotArea::line(const std::vector<double>& x, const std::vector<double>& y, ImU32 col, float thickness) const {
  std::vector<ImVec2> pts;
  pts.reserve(x.size());
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    if (y_.log && !(y[i] > 0)) continue;
    if (!std::isfinite(y[i])) continue;
    pts.emplace_back(px(x[i]), py(y[i]));
  }
  if (pts.size() < 2) return;
  dl_->PushClipRect(a_, b_, true);
  dl_->AddPolyline(pts.data(), (int)pts.size(), col, 0, thickness);
  dl_->PopClipRect();
}

void PlotArea::dot(double x, double y, ImU32 col, float radius) const {
  if ((y_.log && !(y > 0)) || !std::isfinite(y)) return;
  dl_->PushClipRect(ImVec2(a_.x - radius, a_.y - radius), ImVec2(b_.x + radius, b_.y + radius), true);
  dl_->AddCircleFilled(ImVec2(px(x), py(y)), radius, col);
  dl_->AddCircle(ImVec2(px(x), py(y)), radius, IM_COL32(20, 20, 20, 255));
  dl_->PopClipRect();
}

void PlotArea::vline(double x, ImU32 col, float thickness) const {
  // A filled rectangle on whole pixels: crisp, without anti-aliased fringes.
  const float sx = std::round(px(x)), h = std::max(1.f, std::round(thickness)) / 2;
  dl_->AddRectFilled(ImVec2(std::floor(sx - h), a_.y), ImVec2(std::floor(sx - h) + 2 * h, b_.y), col);
}

void PlotArea::hline(double y, ImU32 col, float thickness, const char* label) const {
  const float sy = py(y);
  dl_->AddLine(ImVec2(a_.x, sy), ImVec2(b_.x, sy), col, thickness);
  if (label) dl_->AddText(ImVec2(a_.x + 4, sy - ImGui::GetFontSize() - 1), col, label);
}

void PlotArea::xtick(double x, ImU32 col, float length) const {
  const float sx = px(x);
  dl_->AddLine(ImVec2(sx, b_.y), ImVec2(sx, b_.y - length), col, 2.f);
}

void PlotArea::tag(double x, ImU32 col, const char* text) const {
  const float sx = px(x), w = ImGui::CalcTextSize(text).x;
  const float left = sx + 5 + w <= b_.x ? sx + 5 : sx - 5 - w;
  dl_->AddRectFilled(ImVec2(left - 2, a_.y + 2), ImVec2(left + w + 2, a_.y + 3 + ImGui::GetFontSize()), IM_COL32(24, 26, 32, 220));
  dl_->AddText(ImVec2(left, a_.y + 2), col, text);
}

void PlotArea::legend(const std::vector<std::pair<std::string, ImU32>>& items) const {
  float x = b_.x - 6;
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    const float w = ImGui::CalcTextSize(it->first.c_str()).x;
    x -= w;
    dl_->AddText(ImVec2(x, item_min_.y + 1), kText, it->first.c_str());
    x -= 18;
    const float cy = item_min_.y + 1 + ImGui::GetFontSize() / 2;
    dl_->AddLine(ImVec2(x, cy), ImVec2(x + 14, cy), it->second, 3.f);
    x -= 14;
  }
}

ImVec4 PlotArea::fb_rect() const {
  const ImVec2 s = ImGui::GetIO().DisplayFramebufferScale;
  return ImVec4(item_min_.x * s.x, item_min_.y * s.y, item_max_.x * s.x, item_max_.y * s.y);
}

}  // namespace vksd::view
