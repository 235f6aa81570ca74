// Images in and out: PNG/JPEG/... reading (stb_image), PNG writing with text metadata (libpng;
// the generation parameters travel in an iTXt chunk the way AUTOMATIC1111 stores them), atomic
// file replacement, and the mapping between 8-bit pixels
// and the [-1, 1] float images the VAE works with.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vksd {

// 8-bit interleaved pixels, row-major (HWC); channels 1 (gray), 3 (RGB) or 4 (RGBA).
struct Image {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> pixels;
  Image() = default;
  Image(int w, int h, int c) : width(w), height(h), channels(c), pixels((size_t)w * h * c, 0) {}
  uint8_t* at(int x, int y) { return pixels.data() + ((size_t)y * width + x) * channels; }
  const uint8_t* at(int x, int y) const { return pixels.data() + ((size_t)y * width + x) * channels; }
};

using TextChunks = std::vector<std::pair<std::string, std::string>>;  // keyword (Latin-1), text (UTF-8)

// Read any format stb_image knows, converted to `channels` (1, 3 or 4). A missing or
// undecodable file is an Error naming the path and the reason.
// A picture file (PNG, JPEG, BMP, ...) as 8-bit pixels. Only regular files are read (a FIFO or a
// device is refused, never blocks); the size is read from the header first and anything wider
// or taller than kMaxImageSide is refused before any pixel memory is allocated; a truncated PNG
// or JPEG is reported as truncated.
constexpr int kMaxImageSide = 16384;
Image read_image(const std::string& path, int channels = 3);
// The same from bytes in memory (`name` for messages; the bytes are read, not copied): what
// the fuzz harness drives.
Image decode_image(std::string_view bytes, const std::string& name, int channels = 3);
// The same for a buffer (an uploaded image); `what` names it in errors.
Image decode_image(const uint8_t* data, size_t size, int channels, const std::string& what);
// PNG bytes with uncompressed iTXt chunks (keyword 1-79 Latin-1 chars, UTF-8 text without NUL).
std::vector<uint8_t> encode_png(const Image& img, const TextChunks& text = {});
// encode_png, then write_file_atomic.
void write_png(const std::string& path, const Image& img, const TextChunks& text = {});
// The tEXt, zTXt and iTXt chunks of a PNG file (keyword, text), in file order.
TextChunks read_png_text(const std::string& path);

// Write to an unnamed temp file in the folder (O_TMPFILE; "<path>.tmp-<pid>" where unsupported),
// fsync, and rename over `path`, so that a reader never sees a half written file, a failure or
// a kill leaves the old file (or none) behind, and no temp file is left over.
void write_file_atomic(const std::string& path, const void* data, size_t size);

// NCHW float image (channel c of `c_total` at batch index n) -> 8-bit RGB by the reference
// rule u8 = (uint8)(clamp((x + 1) / 2, 0, 1) * 255 + 0.5).
Image tensor_to_image(const float* nchw, int channels, int height, int width);
// 8-bit RGB -> NCHW float in [-1, 1] (x = u8 / 127.5 - 1).
std::vector<float> image_to_tensor(const Image& img);
// A grayscale mask image -> [H*W] floats in [0, 1] (white = 1 = repaint).
std::vector<float> image_to_mask(const Image& img);

// A grid of equally sized images, `cols` per row, with `pad` pixels of dark gray between.
Image contact_sheet(const std::vector<Image>& images, int cols, int pad = 2);
// Nearest-neighbour upscale by an integer factor (for latent previews).
Image upscale_nearest(const Image& img, int factor);

}  // namespace vksd
