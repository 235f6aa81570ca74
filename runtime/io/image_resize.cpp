#include "runtime/io/image_resize.h"

#include <algorithm>
#include <cstring>

#include "runtime/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_STATIC
#include <stb_image_resize.h>
#pragma GCC diagnostic pop

namespace vksd {

ResizeMode parse_resize_mode(const std::string& n) {
  if (n == "just-resize" || n == "resize" || n == "0" || n == "Just resize") return ResizeMode::JustResize;
  if (n == "crop" || n == "crop-and-resize" || n == "1" || n == "Crop and resize") return ResizeMode::CropAndResize;
  if (n == "fill" || n == "resize-and-fill" || n == "2" || n == "Resize and fill") return ResizeMode::ResizeAndFill;
  fail("unknown resize mode '" + n + "' (valid: just-resize, crop, fill; or A1111's 0, 1, 2)");
}

const char* resize_mode_name(ResizeMode m) {
  switch (m) {
    case ResizeMode::JustResize: return "just-resize";
    case ResizeMode::CropAndResize: return "crop";
    case ResizeMode::ResizeAndFill: return "fill";
  }
  return "?";
}

Image resize_image(const Image& img, int width, int height) {
  if (width <= 0 || height <= 0) fail("resize_image: empty target size");
  if (img.width == width && img.height == height) return img;
  Image out(width, height, img.channels);
  if (!stbir_resize_uint8(img.pixels.data(), img.width, img.height, 0, out.pixels.data(), width, height, 0, img.channels))
    fail("resize_image: stb_image_resize failed");
  return out;
}

// `src` pasted onto `dst` with its top-left corner at (x, y), clipped.
static void paste(Image& dst, const Image& src, int x, int y) {
  for (int sy = 0; sy < src.height; ++sy) {
    const int dy = y + sy;
    if (dy < 0 || dy >= dst.height) continue;
    const int x0 = std::max(0, -x), x1 = std::min(src.width, dst.width - x);
    if (x1 > x0) std::memcpy(dst.at(x + x0, dy), src.at(x0, sy), (size_t)(x1 - x0) * src.channels);
  }
}

// The rectangle [x, y, w, h] of img as its own image.
static Image crop(const Image& img, int x, int y, int w, int h) {
  Image out(w, h, img.channels);
  for (int r = 0; r < h; ++r) std::memcpy(out.at(0, r), img.at(x, y + r), (size_t)w * img.channels);
  return out;
}

Image fit_image(const Image& img, int width, int height, ResizeMode mode) {
  if (mode == ResizeMode::JustResize) return resize_image(img, width, height);
  // A1111's integer arithmetic: the side that matches is the target's, the other keeps the
  // picture's aspect ratio (floor division).
  const double ratio = (double)width / height, src_ratio = (double)img.width / img.height;
  const bool cover = mode == ResizeMode::CropAndResize;
  const bool match_width = cover ? ratio > src_ratio : ratio < src_ratio;
  const int src_w = match_width ? width : img.width * height / img.height;
  const int src_h = match_width ? img.height * width / img.width : height;
  const Image resized = resize_image(img, std::max(1, src_w), std::max(1, src_h));
  Image out(width, height, img.channels);
  const int ox = width / 2 - resized.width / 2, oy = height / 2 - resized.height / 2;
  paste(out, resized, ox, oy);
  if (!cover) {
    if (ratio < src_ratio && oy > 0) {  // bands above and below
      paste(out, resize_image(crop(resized, 0, 0, resized.width, 1), width, oy), 0, 0);
      const int below = height - (oy + resized.height);
      if (below > 0)
        paste(out, resize_image(crop(resized, 0, resized.height - 1, resized.width, 1), width, below), 0, oy + resized.height);
    } else if (ratio > src_ratio && ox > 0) {  // bands left and right
      paste(out, resize_image(crop(resized, 0, 0, 1, resized.height), ox, height), 0, 0);
      const int right = width - (ox + resized.width);
      if (right > 0)
        paste(out, resize_image(crop(resized, resized.width - 1, 0, 1, resized.height), right, height), ox + resized.width, 0);
    }
  }
  return out;
}

}  // namespace vksd
