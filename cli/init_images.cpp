#include "cli/init_images.h"

#include <cstdio>
#include <string>

#include "runtime/error.h"

namespace vksd::cli {

// Smaller than one latent pixel (8x8) in either direction: no picture to start from, only a
// colour; refused rather than blown up (a 1x1 "image" is almost always a mistake).
constexpr int kMinSide = 8;

static void fit(std::optional<Image>& img, const char* what, int w, int h, ResizeMode mode, bool json) {
  if (!img) return;
  if (img->width < kMinSide || img->height < kMinSide)
    fail(std::string(what) + " is " + std::to_string(img->width) + "x" + std::to_string(img->height) +
         ": too small to start from (at least " + std::to_string(kMinSide) + "x" + std::to_string(kMinSide) + " pixels)");
  if (img->width == w && img->height == h) return;
  if (!json)
    std::fprintf(stderr, "%s is %dx%d: fitted to %dx%d (--resize-mode %s)\n", what, img->width, img->height, w, h,
                 resize_mode_name(mode));
  img = fit_image(*img, w, h, mode);
}

void fit_init_images(GenerateParams& p, ResizeMode mode, bool json) {
  fit(p.init_image, "--init-img", p.width, p.height, mode, json);
  fit(p.mask, "--mask", p.width, p.height, mode, json);
}

}  // namespace vksd::cli
