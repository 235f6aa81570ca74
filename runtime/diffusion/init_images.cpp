#include "runtime/diffusion/init_images.h"

#include "runtime/error.h"

namespace vksd {

std::string fit_init_image(std::optional<Image>& img, const std::string& what, int width, int height, ResizeMode mode) {
  if (!img) return "";
  if (img->width < kMinInitImageSide || img->height < kMinInitImageSide)
    fail(what + " is " + std::to_string(img->width) + "x" + std::to_string(img->height) + ": too small to start from (at least " +
         std::to_string(kMinInitImageSide) + "x" + std::to_string(kMinInitImageSide) + " pixels)");
  if (img->width == width && img->height == height) return "";
  const std::string note = what + " is " + std::to_string(img->width) + "x" + std::to_string(img->height) + ": fitted to " +
                           std::to_string(width) + "x" + std::to_string(height) + " (--resize-mode " + resize_mode_name(mode) + ")";
  img = fit_image(*img, width, height, mode);
  return note;
}

}  // namespace vksd
