// Driving `vksd view` headless in tests: an Xvfb display, the screenshot and its layout file
// (where the canvas items and panels are, and the UI state), and pixel helpers.
#pragma once
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/io/image_io.h"
#include "runtime/io/json.h"
#include "tests/test_util.h"
#include "tests/xvfb_display.h"

namespace vksd::test {

using vksd::Image;
using vksd::Json;
namespace fs = std::filesystem;

inline const Json& at(const Json& j, const std::string& key) {
  const Json* v = j.find(key);
  REQUIRE_MESSAGE(v != nullptr, "layout file lacks " << key);
  return *v;
}
inline int rect_at(const Json& r, int i) { return (int)r.as_array("rect").at((size_t)i).as_number(); }

struct Shot {
  int code = -1;
  std::string out;
  Image image;
  Json layout;
  // The canvas item `name` ("x0", "xt") sampled at the centre of each image pixel: the canvas
  // draws the image at an integer zoom with nearest-neighbour sampling, so this recovers it.
  Image item(const std::string& name) const {
    const Json& r = at(layout, name);
    const int x0 = rect_at(r, 0), y0 = rect_at(r, 1), x1 = rect_at(r, 2), y1 = rect_at(r, 3);
    const int w = rect_at(at(layout, "image_size"), 0), h = rect_at(at(layout, "image_size"), 1);
    REQUIRE(x1 > x0);
    REQUIRE(y1 > y0);
    Image out(w, h, 3);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const int sx = x0 + (int)(((double)x + 0.5) * (x1 - x0) / w), sy = y0 + (int)(((double)y + 0.5) * (y1 - y0) / h);
        REQUIRE(sx < image.width);
        REQUIRE(sy < image.height);
        std::copy(image.at(sx, sy), image.at(sx, sy) + 3, out.at(x, y));
      }
    return out;
  }
  std::string state() const { return at(layout, "state").as_string(); }
  int number(const char* k) const { return (int)at(layout, k).as_number(); }
  bool flag(const char* k) const { return at(layout, k).as_bool(); }
  std::string text(const char* k) const { return at(layout, k).as_string(); }
};

struct ViewerFixture {
  fs::path dir = fs::temp_directory_path() / ("vksd_view_" + std::to_string(::getpid()));
  vksd::test::XvfbDisplay display;
  ViewerFixture() { fs::create_directories(dir); }
  ~ViewerFixture() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }

  // The demo model, a short deterministic run.
  static std::string settings() { return "-p 'red apple' --steps 8 --seed 7 --sampler euler --cfg-scale 5 "; }

  Shot view(const std::string& name, const std::string& args) {
    Shot s;
    const std::string png = path(name + ".png"), layout = path(name + ".json");
    auto r = vksd::test::run_vksd("view --screenshot " + shell_quote(png) + " --layout " + shell_quote(layout) + " " + args);
    s.code = r.code, s.out = r.out;
    INFO("vksd view " << args << "\n" << r.out);
    REQUIRE(fs::exists(png));
    REQUIRE(fs::exists(layout));
    s.image = vksd::read_image(png, 3);
    std::ifstream f(layout);
    std::stringstream ss;
    ss << f.rdbuf();
    s.layout = Json::parse(ss.str());
    return s;
  }
};

inline double mean_abs_diff(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  double d = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) d += std::abs((int)a.pixels[i] - (int)b.pixels[i]);
  return d / (double)a.pixels.size();
}

inline double stddev(const Image& a) {
  double m = 0, v = 0;
  for (auto p : a.pixels) m += p;
  m /= (double)a.pixels.size();
  for (auto p : a.pixels) v += (p - m) * (p - m);
  return std::sqrt(v / (double)a.pixels.size());
}

inline bool no_validation_messages(const std::string& out) { return out.find("alidation") == std::string::npos; }

#define NEED_VIEWER()                                                                  \
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built"); \
  REQUIRE_MESSAGE(vksd::test::XvfbDisplay::available(), "Xvfb is not installed (scripts/setup.sh installs it)")


// The region `r` ([x0, y0, x1, y1] of the layout file) of a screenshot.
inline Image crop(const Image& shot, const Json& r) {
  const int x0 = rect_at(r, 0), y0 = rect_at(r, 1), x1 = std::min(rect_at(r, 2), shot.width),
            y1 = std::min(rect_at(r, 3), shot.height);
  REQUIRE(x1 > x0);
  REQUIRE(y1 > y0);
  Image out(x1 - x0, y1 - y0, 3);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) std::copy(shot.at(x, y), shot.at(x, y) + 3, out.at(x - x0, y - y0));
  return out;
}

}  // namespace vksd::test
