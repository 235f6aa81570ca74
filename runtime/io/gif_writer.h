// Animated GIF export (Debian's giflib): e.g. the viewer's timeline of denoising steps as one
// looping file.
//
// Palettes: when all frames together use at most 256 colours, one global palette holds them
// exactly (lossless). Otherwise every frame gets its own local palette: exact when that frame
// has at most 256 colours, else a 256-colour median-cut quantization of the frame at full 8-bit
// precision (boxes split where their count-weighted variance is largest, entries = the boxes'
// pixel-weighted means, every pixel mapped to its nearest entry; no dithering, so that still
// areas stay still across frames). Thread-safe (giflib's own quantizer, GifQuantizeBuffer, is
// not: it keeps a static, works at 5 bits per channel and turns white into 248).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/io/image_io.h"

namespace vksd {

// The GIF89a file as bytes. `frames`: one or more RGB (3-channel) images of the same size, at
// most 65535 x 65535. `delay_centiseconds`: the time each frame stays up, 0..65535 (browsers show
// delays of 0 or 1 as 10). `loop_count`: 0 = loop forever; n > 0 = the NETSCAPE2.0 repeat count
// (most viewers show the animation n + 1 times), at most 65535; < 0 = no loop extension (shown
// once). Bad arguments are an Error saying which.
std::vector<uint8_t> encode_gif(const std::vector<Image>& frames, int delay_centiseconds, int loop_count = 0);

// encode_gif, then write_file_atomic: a reader never sees a half-written file, and a failure
// (bad arguments, unwritable path) leaves the old file, or none, behind.
void write_gif(const std::string& path, const std::vector<Image>& frames, int delay_centiseconds, int loop_count = 0);

}  // namespace vksd
