// `vksd generate --init-img/--mask` of another size than the image to make: fitted with
// A1111's resize modes (runtime/io/image_resize.h) instead of refused, with a note on stderr.
#pragma once
#include "runtime/diffusion/pipeline.h"
#include "runtime/io/image_resize.h"

namespace vksd::cli {

// p.init_image and p.mask (when set) fitted to p.width x p.height.
void fit_init_images(GenerateParams& p, ResizeMode mode, bool json);

}  // namespace vksd::cli
