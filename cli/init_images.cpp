#include "cli/init_images.h"

#include <cstdio>
#include <string>

namespace vksd::cli {

static void fit(std::optional<Image>& img, const char* what, int w, int h, ResizeMode mode, bool json) {
  if (!img || (img->width == w && img->height == h)) return;
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
