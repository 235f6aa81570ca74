// Fitting a picture to another size the way AUTOMATIC1111's img2img does (modules/images.py
// resize_image), so that an init image or mask of any size is used instead of refused:
//   just resize      stretch to the size (the aspect ratio may change)
//   crop and resize  scale to cover the size, keep the centre, crop the overflow
//   resize and fill  scale to fit inside, centre, and fill the two empty bands by stretching the
//                    picture's outermost row/column of pixels across them
// The resampling itself is stb_image_resize's (Mitchell filter when shrinking, Catmull-Rom when
// enlarging, in sRGB-unaware 8-bit arithmetic like PIL's default).
#pragma once
#include <string>

#include "runtime/io/image_io.h"

namespace vksd {

enum class ResizeMode { JustResize, CropAndResize, ResizeAndFill };

// "just-resize" / "resize" / "0", "crop" / "crop-and-resize" / "1", "fill" / "resize-and-fill" / "2"
// (A1111's names and numbers); Error listing them otherwise.
ResizeMode parse_resize_mode(const std::string& name);
const char* resize_mode_name(ResizeMode m);

// Plain resampling to width x height (any channel count).
Image resize_image(const Image& img, int width, int height);
// img fitted to width x height by `mode`.
Image fit_image(const Image& img, int width, int height, ResizeMode mode);

}  // namespace vksd
