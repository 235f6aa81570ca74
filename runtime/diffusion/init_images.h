// An img2img start image or an inpainting mask of another size than the image to make: fitted
// with A1111's resize modes (runtime/io/image_resize.h) instead of refused. Shared by
// `vksd generate` (--init-img/--mask, --resize-mode) and `vksd serve` (init_images/mask,
// resize_mode), so both fit the same way.
#pragma once
#include <optional>
#include <string>

#include "runtime/io/image_io.h"
#include "runtime/io/image_resize.h"

namespace vksd {

// Smaller than one latent pixel (8x8) in either direction: no picture to start from, only a
// colour; refused rather than blown up (a 1x1 "image" is almost always a mistake).
constexpr int kMinInitImageSide = 8;

// `img` (if set) fitted to width x height with `mode`; `what` names it in the error for one
// smaller than kMinInitImageSide. Returns a note for the user ("--mask is 64x48: fitted to
// 64x64 (resize mode crop)"), or "" when nothing changed.
std::string fit_init_image(std::optional<Image>& img, const std::string& what, int width, int height, ResizeMode mode);

}  // namespace vksd
