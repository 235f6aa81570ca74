#include "runtime/diffusion/step_frames.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "runtime/error.h"
#include "runtime/io/image_io.h"

namespace fs = std::filesystem;

namespace vksd {

namespace {

struct Glyph {
  const char* ch;  // UTF-8
  const char* rows[7];
};
// Drawn for this sheet: 5x7 cells, '#' = ink.
constexpr Glyph kFont[] = {
    {"0", {" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "}},
    {"1", {"  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "}},
    {"2", {" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"}},
    {"3", {"#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "}},
    {"4", {"   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "}},
    {"5", {"#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "}},
    {"6", {"  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "}},
    {"7", {"#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "}},
    {"8", {" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "}},
    {"9", {" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "}},
    {".", {"     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "}},
    {"=", {"     ", "     ", "#####", "     ", "#####", "     ", "     "}},
    {"_", {"     ", "     ", "     ", "     ", "     ", "     ", "#####"}},
    {"-", {"     ", "     ", "     ", "#####", "     ", "     ", "     "}},
    {" ", {"     ", "     ", "     ", "     ", "     ", "     ", "     "}},
    {"s", {"     ", "     ", " ####", "#    ", " ### ", "    #", "#### "}},
    {"t", {" #   ", " #   ", "#### ", " #   ", " #   ", " #  #", "  ## "}},
    {"e", {"     ", "     ", " ### ", "#   #", "#####", "#    ", " ### "}},
    {"p", {"     ", "     ", "#### ", "#   #", "#### ", "#    ", "#    "}},
    {"x", {"     ", "     ", "#   #", " # # ", "  #  ", " # # ", "#   #"}},
    {"\xcf\x83", {"     ", "     ", " ####", "#  # ", "#   #", "#   #", " ### "}},  // σ
    {"^", {"  #  ", " # # ", "#   #", "     ", "     ", "     ", "     "}},
};

const Glyph* glyph_at(const std::string& s, size_t i, size_t& len) {
  for (const auto& g : kFont) {
    const size_t n = std::strlen(g.ch);
    if (s.compare(i, n, g.ch) == 0) {
      len = n;
      return &g;
    }
  }
  len = 1;
  return nullptr;
}

std::string fmt(const char* f, double v) {
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Box-filter downscale by an integer factor (sheet tiles).
Image downscale(const Image& im, int factor) {
  if (factor <= 1) return im;
  Image out(im.width / factor, im.height / factor, im.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < im.channels; ++c) {
        int sum = 0;
        for (int dy = 0; dy < factor; ++dy)
          for (int dx = 0; dx < factor; ++dx) sum += im.at(x * factor + dx, y * factor + dy)[c];
        out.at(x, y)[c] = (uint8_t)((sum + factor * factor / 2) / (factor * factor));
      }
  return out;
}

}  // namespace

int draw_label(Image& img, int x, int y, const std::string& text, const uint8_t rgb[3]) {
  int cx = x;
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    const Glyph* g = glyph_at(text, i, len);
    i += len;
    if (g)
      for (int r = 0; r < 7; ++r)
        for (int c = 0; c < 5; ++c)
          if (g->rows[r][c] == '#' && cx + c >= 0 && cx + c < img.width && y + r >= 0 && y + r < img.height)
            for (int k = 0; k < std::min(3, img.channels); ++k) img.at(cx + c, y + r)[k] = rgb[k];
    cx += 6;
  }
  return cx - x;
}

Image labelled_contact_sheet(const std::vector<Image>& xt, const std::vector<Image>& x0,
                             const std::vector<std::vector<std::string>>& labels) {
  if (xt.empty() || xt.size() != x0.size() || labels.size() != xt.size()) fail("contact sheet: rows differ in length");
  const int w = xt[0].width, h = xt[0].height, pad = 2, line = 9;
  size_t label_lines = 0;
  for (const auto& l : labels) label_lines = std::max(label_lines, l.size());
  const int left = 6 * 3 + 2 * pad;  // room for "x_t"
  const int top = (int)label_lines * line + pad;
  const int cols = (int)xt.size();
  Image sheet(left + cols * (w + pad), top + 2 * (h + pad) + pad, 3);
  std::fill(sheet.pixels.begin(), sheet.pixels.end(), (uint8_t)40);
  const uint8_t ink[3] = {230, 230, 230};
  for (int c = 0; c < cols; ++c) {
    const int ox = left + c * (w + pad);
    for (size_t l = 0; l < labels[(size_t)c].size(); ++l) draw_label(sheet, ox, pad + (int)l * line, labels[(size_t)c][l], ink);
    for (int row = 0; row < 2; ++row) {
      const Image& tile = row == 0 ? xt[(size_t)c] : x0[(size_t)c];
      if (tile.width != w || tile.height != h || tile.channels != 3) fail("contact sheet: tiles differ in size");
      const int oy = top + pad + row * (h + pad);
      for (int y = 0; y < h; ++y) std::memcpy(sheet.at(ox, oy + y), tile.at(0, y), (size_t)w * 3);
    }
  }
  draw_label(sheet, pad, top + pad + h / 2 - 3, "x_t", ink);
  draw_label(sheet, pad, top + 2 * pad + h + h / 2 - 3, "x0^", ink);
  return sheet;
}

StepFrames::StepFrames(const StepFrameOptions& o, const LatentRgbMap& map, int width, int height)
    : o_(o), map_(map), width_(width), height_(height) {
  if (!o_.dir.empty()) fs::create_directories(o_.dir);
}

Image StepFrames::approx(const std::vector<double>& latent, double scale) const {
  return upscale_nearest(latent_preview(latent, lh_, lw_, map_, scale), std::max(1, width_ / std::max(1, lw_)));
}

std::string StepFrames::frame_path(int step, const char* what) const {
  char name[48];
  std::snprintf(name, sizeof name, "step_%03d_%s.png", step, what);
  return (fs::path(o_.dir) / (o_.prefix + name)).string();
}

void StepFrames::on_step(const StepEvent& e, int run_step, int run_steps) {
  lh_ = e.height, lw_ = e.width;
  const bool last = run_step == run_steps;
  if (!o_.preview.empty() && (run_step % std::max(1, o_.preview_interval) == 0 || last))
    write_png(o_.preview, approx(*e.denoised, 1.0));
  if (o_.dir.empty()) return;
  if (!last && (run_step - 1) % std::max(1, o_.every) != 0) return;
  Kept k{run_step, e.t, e.sigma, {}, {}, {}};
  // x_t scaled back to unit variance (x = signal x0 + noise eps) so it is visible at any sigma.
  k.xt = approx(*e.x, 1.0 / std::hypot(e.x_signal, e.x_noise));
  write_png(frame_path(run_step, "xt"), k.xt);
  if (o_.vae) {
    k.x0 = *e.denoised;  // decoded after the run: the VAE is not free while sampling
  } else {
    k.x0_img = approx(*e.denoised, 1.0);
    write_png(frame_path(run_step, "x0"), k.x0_img);
  }
  kept_.push_back(std::move(k));
}

void StepFrames::finish(SdPipeline& pipe) {
  if (o_.dir.empty() || kept_.empty()) return;
  std::vector<Image> xt, x0;
  std::vector<std::vector<std::string>> labels;
  const int tile = std::max(1, width_ / 128);  // tiles of at most ~128 px
  for (auto& k : kept_) {
    if (o_.vae) {
      std::vector<float> lat(k.x0.begin(), k.x0.end());
      auto px = pipe.decode_latent(lat, lh_, lw_);
      k.x0_img = tensor_to_image(px.data(), 3, height_, width_);
      write_png(frame_path(k.step, "x0"), k.x0_img);
    }
    xt.push_back(downscale(k.xt, tile));
    x0.push_back(downscale(k.x0_img, tile));
    labels.push_back({"step " + std::to_string(k.step), "t " + fmt("%.0f", k.t), "\xcf\x83 " + fmt(k.sigma < 10 ? "%.2f" : "%.1f", k.sigma)});
  }
  write_png((fs::path(o_.dir) / (o_.prefix + "contact_sheet.png")).string(), labelled_contact_sheet(xt, x0, labels));
}

}  // namespace vksd
