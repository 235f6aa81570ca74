// Animated GIF export: written with runtime/io/gif_writer.h, read back with giflib's own decoder
// (DGifSlurp): frame count, size, loop extension, delays, and pixels (exact with <= 256 colours,
// close for photographic frames), and the same pixels and delays through a second decoder
// (stb_image's); bad arguments and paths fail and leave no file.
#include <doctest/doctest.h>

#include <gif_lib.h>
#include <stb/stb_image.h>  // the implementation is compiled into vksd_runtime (image_io.cpp)

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/io/gif_writer.h"
#include "runtime/io/image_io.h"

using namespace vksd;
namespace fs = std::filesystem;

namespace {

fs::path gif_temp_dir(const char* what) {
  auto d = fs::temp_directory_path() / ("vksd_gif_" + std::string(what) + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

struct Decoded {
  int width = 0, height = 0;
  std::vector<Image> frames;
  std::vector<int> delays;
  int loop_count = -1;  // -1: no NETSCAPE2.0 extension
  bool global_palette = false;
  std::vector<bool> local_palette;
};

Decoded read_gif(const std::string& path) {
  int err = 0;
  GifFileType* gif = DGifOpenFileName(path.c_str(), &err);
  REQUIRE_MESSAGE(gif, "DGifOpenFileName: " << GifErrorString(err));
  const int slurp = DGifSlurp(gif);
  REQUIRE_MESSAGE(slurp == GIF_OK, "DGifSlurp: " << GifErrorString(gif->Error));
  Decoded d;
  d.width = gif->SWidth, d.height = gif->SHeight;
  d.global_palette = gif->SColorMap != nullptr;
  for (int i = 0; i < gif->ImageCount; ++i) {
    const SavedImage& si = gif->SavedImages[i];
    const ColorMapObject* map = si.ImageDesc.ColorMap ? si.ImageDesc.ColorMap : gif->SColorMap;
    REQUIRE(map);
    REQUIRE(si.ImageDesc.Left == 0);
    REQUIRE(si.ImageDesc.Top == 0);
    REQUIRE(si.ImageDesc.Width == d.width);
    REQUIRE(si.ImageDesc.Height == d.height);
    d.local_palette.push_back(si.ImageDesc.ColorMap != nullptr);
    Image im(d.width, d.height, 3);
    for (size_t p = 0; p < (size_t)d.width * d.height; ++p) {
      const int k = si.RasterBits[p];
      REQUIRE(k < map->ColorCount);
      im.pixels[p * 3 + 0] = map->Colors[k].Red;
      im.pixels[p * 3 + 1] = map->Colors[k].Green;
      im.pixels[p * 3 + 2] = map->Colors[k].Blue;
    }
    d.frames.push_back(std::move(im));
    GraphicsControlBlock gcb{};
    REQUIRE(DGifSavedExtensionToGCB(gif, i, &gcb) == GIF_OK);
    d.delays.push_back(gcb.DelayTime);
    CHECK(gcb.TransparentColor == NO_TRANSPARENT_COLOR);
    // The NETSCAPE2.0 application extension (DGifSlurp attaches it to the first image).
    for (int b = 0; b + 1 < si.ExtensionBlockCount; ++b) {
      const ExtensionBlock& e = si.ExtensionBlocks[b];
      if (e.Function == APPLICATION_EXT_FUNC_CODE && e.ByteCount == 11 && std::memcmp(e.Bytes, "NETSCAPE2.0", 11) == 0) {
        const ExtensionBlock& sub = si.ExtensionBlocks[b + 1];
        REQUIRE(sub.Function == CONTINUE_EXT_FUNC_CODE);
        REQUIRE(sub.ByteCount == 3);
        REQUIRE(sub.Bytes[0] == 1);
        d.loop_count = sub.Bytes[1] | sub.Bytes[2] << 8;
      }
    }
  }
  DGifCloseFile(gif, &err);
  return d;
}

// A second, independent decoder: every frame must match giflib's decoding, delays in ms.
void check_with_stb(const std::vector<uint8_t>& gif, const Decoded& ref) {
  int* delays = nullptr;
  int w = 0, h = 0, frames = 0, comp = 0;
  stbi_uc* px = stbi_load_gif_from_memory(gif.data(), (int)gif.size(), &delays, &w, &h, &frames, &comp, 3);
  REQUIRE_MESSAGE(px, "stb_image: " << stbi_failure_reason());
  CHECK(w == ref.width);
  CHECK(h == ref.height);
  REQUIRE(frames == (int)ref.frames.size());
  for (int i = 0; i < frames; ++i) {
    INFO("stb frame " << i);
    CHECK(delays[i] == ref.delays[(size_t)i] * 10);
    const size_t n = (size_t)w * h * 3;
    CHECK(std::vector<uint8_t>(px + i * n, px + (i + 1) * n) == ref.frames[(size_t)i].pixels);
  }
  stbi_image_free(px);
  std::free(delays);
}

int max_abs_diff(const Image& a, const Image& b) {
  int m = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) m = std::max(m, std::abs((int)a.pixels[i] - (int)b.pixels[i]));
  return m;
}
double mean_abs_diff(const Image& a, const Image& b) {
  double s = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) s += std::abs((int)a.pixels[i] - (int)b.pixels[i]);
  return s / (double)a.pixels.size();
}

// Few colours: a checkerboard of `colours` distinct RGB values (offset by `seed`).
Image blocks(int w, int h, int colours, int seed) {
  Image im(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const int k = ((x / 3) * 7 + (y / 2) * 3 + seed) % colours;
      uint8_t* p = im.at(x, y);
      p[0] = (uint8_t)(k * 37 + seed * 11), p[1] = (uint8_t)(k * 91 + 5), p[2] = (uint8_t)(255 - k * 13 - seed);
    }
  return im;
}

// Many colours: smooth gradients with a soft disc, like a generated image (thousands of colours).
Image photo(int w, int h, int seed) {
  Image im(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double u = (double)x / (w - 1), v = (double)y / (h - 1);
      const double r = std::hypot(u - 0.5 - 0.1 * seed, v - 0.5);
      const double disc = 1.0 / (1.0 + std::exp((r - 0.3) * 30));
      uint8_t* p = im.at(x, y);
      p[0] = (uint8_t)std::lround(255 * ((1 - disc) * u + disc * 0.9));
      p[1] = (uint8_t)std::lround(255 * ((1 - disc) * v + disc * 0.2 * seed));
      p[2] = (uint8_t)std::lround(255 * ((1 - disc) * (1 - u * v) + disc * 0.1));
    }
  // Pure white and black pixels must survive quantization exactly (backgrounds, outlines).
  for (int x = 0; x < w; ++x) {
    uint8_t* a = im.at(x, 0);
    a[0] = a[1] = a[2] = 255;
    uint8_t* b = im.at(x, h - 1);
    b[0] = b[1] = b[2] = 0;
  }
  return im;
}

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("gif: 3 frames with <= 256 colours in all round-trip exactly, one global palette, loop and delays") {
  const auto dir = gif_temp_dir("exact");
  const auto path = (dir / "anim.gif").string();
  // 40 + 50 + 60 colours (the sets overlap a little), odd width.
  std::vector<Image> frames = {blocks(37, 24, 40, 0), blocks(37, 24, 50, 1), blocks(37, 24, 60, 2)};
  write_gif(path, frames, 12);
  const Decoded d = read_gif(path);
  CHECK(d.width == 37);
  CHECK(d.height == 24);
  REQUIRE(d.frames.size() == 3);
  CHECK(d.loop_count == 0);  // forever
  CHECK(d.global_palette);
  for (int i = 0; i < 3; ++i) {
    INFO("frame " << i);
    CHECK(d.delays[i] == 12);
    CHECK(!d.local_palette[i]);
    CHECK(d.frames[i].pixels == frames[i].pixels);
  }
  check_with_stb(encode_gif(frames, 12), d);
  // A loop count and no loop extension at all.
  write_gif(path, frames, 7, 3);
  CHECK(read_gif(path).loop_count == 3);
  CHECK(read_gif(path).delays == std::vector<int>{7, 7, 7});
  write_gif(path, frames, 0, -1);
  CHECK(read_gif(path).loop_count == -1);
  // Nothing but the output is left (the temp file was renamed).
  CHECK(count_files(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("gif: frames with many colours get per-frame palettes: exact where <= 256, median cut within tolerance otherwise") {
  const auto dir = gif_temp_dir("photo");
  const auto path = (dir / "photo.gif").string();
  // Frame 0: 200 colours, frame 1: 250 (together > 256), frame 2: thousands.
  std::vector<Image> frames = {blocks(64, 48, 200, 3), blocks(64, 48, 250, 4), photo(64, 48, 1)};
  write_gif(path, frames, 25, 0);
  const Decoded d = read_gif(path);
  REQUIRE(d.frames.size() == 3);
  CHECK(d.width == 64);
  CHECK(d.height == 48);
  CHECK(d.loop_count == 0);
  CHECK(d.delays == std::vector<int>{25, 25, 25});
  CHECK(d.local_palette == std::vector<bool>{true, true, true});
  CHECK(d.frames[0].pixels == frames[0].pixels);
  CHECK(d.frames[1].pixels == frames[1].pixels);
  const int max_err = max_abs_diff(d.frames[2], frames[2]);
  const double mean_err = mean_abs_diff(d.frames[2], frames[2]);
  MESSAGE("median cut of a " << 64 * 48 << "-pixel gradient frame: max error " << max_err << ", mean " << mean_err);
  // (measured: max 18, mean 3.2; giflib's GifQuantizeBuffer gives max 48, mean 6.7 on this frame)
  CHECK(max_err <= 24);
  CHECK(mean_err < 4.0);
  for (int x = 0; x < 64; ++x) {  // pure white and black rows stay exact
    CHECK(d.frames[2].at(x, 0)[0] == 255);
    CHECK(d.frames[2].at(x, 0)[2] == 255);
    CHECK(d.frames[2].at(x, 47)[1] == 0);
  }
  // Deterministic: the same frames give the same bytes (those of the file).
  const auto bytes = encode_gif(frames, 25, 0);
  CHECK(bytes == encode_gif(frames, 25, 0));
  CHECK(bytes.size() == fs::file_size(path));
  check_with_stb(bytes, d);
  fs::remove_all(dir);
}

TEST_CASE("gif: bad frames, arguments and paths fail with an Error and leave no file") {
  const auto dir = gif_temp_dir("bad");
  const auto path = (dir / "bad.gif").string();
  const Image a = blocks(16, 16, 8, 0);
  CHECK_THROWS_WITH_AS(write_gif(path, {}, 10), doctest::Contains("no frames"), Error);
  CHECK_THROWS_WITH_AS(write_gif(path, {a, blocks(16, 17, 8, 1)}, 10), doctest::Contains("same size"), Error);
  CHECK_THROWS_WITH_AS(write_gif(path, {a, Image(16, 16, 4)}, 10), doctest::Contains("RGB"), Error);
  CHECK_THROWS_WITH_AS(write_gif(path, {Image(0, 0, 3)}, 10), doctest::Contains("1..65535"), Error);
  CHECK_THROWS_WITH_AS(write_gif(path, {a}, -1), doctest::Contains("delay"), Error);
  CHECK_THROWS_WITH_AS(write_gif(path, {a}, 70000), doctest::Contains("delay"), Error);
  CHECK_THROWS_WITH_AS(write_gif(path, {a}, 10, 70000), doctest::Contains("loop count"), Error);
  CHECK(count_files(dir) == 0);
  CHECK_THROWS_AS(write_gif((dir / "no/such/dir/x.gif").string(), {a}, 10), Error);
  CHECK(!fs::exists(dir / "no"));
  CHECK(count_files(dir) == 0);
  // A failed write keeps the old file as it was.
  write_gif(path, {a}, 10);
  const auto size = fs::file_size(path);
  CHECK_THROWS_AS(write_gif(path, {a, blocks(8, 8, 8, 1)}, 10), Error);
  CHECK(fs::file_size(path) == size);
  CHECK(read_gif(path).frames.size() == 1);
  CHECK(count_files(dir) == 1);
  fs::remove_all(dir);
}
