// JPEG reading through libjpeg-turbo (runtime/io/jpeg_decode.h): real JPEGs — written here by
// libjpeg's own encoder, baseline and progressive — decode to their pixels; the inputs that
// broke Debian's stb_image (tests/fuzz/corpus/image) are clear errors in bounded time.
#include <doctest/doctest.h>

#include <chrono>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/io/jpeg_decode.h"

namespace {

std::string error_of(const std::string& bytes, int channels = 3) {
  try {
    vksd::decode_image(bytes, "t.jpg", channels);
  } catch (const vksd::Error& e) {
    return e.what();
  }
  return "";
}

// A JPEG of `img` (1 or 3 channels) by libjpeg's encoder at quality 100, no chroma subsampling;
// `scans` (if given) is the progressive scan script.
std::string encode_jpeg(const vksd::Image& img, const std::vector<jpeg_scan_info>* scans = nullptr, bool progressive = false) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  err.error_exit = [](j_common_ptr) { std::abort(); };  // a test bug, not an input
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &out, &size);
  c.image_width = (JDIMENSION)img.width;
  c.image_height = (JDIMENSION)img.height;
  c.input_components = img.channels;
  c.in_color_space = img.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 100, TRUE);
  for (int i = 0; i < c.num_components; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
  if (progressive) jpeg_simple_progression(&c);
  if (scans) {
    c.scan_info = scans->data();
    c.num_scans = (int)scans->size();
  }
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(img.at(0, (int)c.next_scanline));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::string bytes((const char*)out, size);
  jpeg_destroy_compress(&c);
  std::free(out);
  return bytes;
}

int max_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs((int)a[i] - (int)b[i]));
  return m;
}

vksd::Image gradient(int w, int h) {
  vksd::Image img(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.at(x, y);
      p[0] = (uint8_t)(x * 255 / (w - 1)), p[1] = (uint8_t)(y * 255 / (h - 1)), p[2] = (uint8_t)((x + y) * 127 / (w + h - 2));
    }
  return img;
}

}  // namespace

TEST_CASE("JPEG: baseline and progressive files from libjpeg's encoder decode to their pixels, as RGB, RGBA and gray") {
  const vksd::Image img = gradient(37, 23);  // not a multiple of the 8x8 block
  for (bool progressive : {false, true}) {
    INFO("progressive " << progressive);
    const std::string jpg = encode_jpeg(img, nullptr, progressive);
    const vksd::Image rgb = vksd::decode_image(jpg, "t.jpg", 3);
    REQUIRE(rgb.width == 37);
    REQUIRE(rgb.height == 23);
    REQUIRE(rgb.pixels.size() == img.pixels.size());
    CHECK(max_abs_diff(rgb.pixels, img.pixels) <= 3);  // quality 100, 4:4:4: rounding only
    const vksd::Image rgba = vksd::decode_image(jpg, "t.jpg", 4);
    REQUIRE(rgba.pixels.size() == (size_t)37 * 23 * 4);
    for (size_t i = 0; i < (size_t)37 * 23; ++i) {
      CHECK(rgba.pixels[i * 4 + 3] == 255);
      CHECK(rgba.pixels[i * 4] == rgb.pixels[i * 3]);
    }
    // Gray is the JPEG's own luma plane (Y = 0.299 R + 0.587 G + 0.114 B).
    const vksd::Image gray = vksd::decode_image(jpg, "t.jpg", 1);
    REQUIRE(gray.pixels.size() == (size_t)37 * 23);
    int worst = 0;
    for (size_t i = 0; i < gray.pixels.size(); ++i) {
      const uint8_t* p = &img.pixels[i * 3];
      const double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
      worst = std::max(worst, (int)std::abs(gray.pixels[i] - y + 0.5));
    }
    CHECK(worst <= 3);
  }
}

TEST_CASE("JPEG: the inputs that broke stb_image are clear errors in bounded time, with no sanitizer report") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(VKSD_SOURCE_DIR) / "tests/fuzz/corpus/image";
  struct Case {
    const char* file;
    const char* message;
  };
  const Case cases[] = {
      // A 625-byte baseline JPEG declaring 16384x16384 whose data ends right after its scan
      // header: stb_image decoded the missing data as zeros, > 10 s under the fuzzer's ASan.
      {"bomb-16384-no-data.jpg", "truncated or corrupt JPEG (the image data ends before the image is complete)"},
      // stb_image shifted a 32-bit value by 33 in its bit reader (UBSan, tests/fuzz).
      {"stb-shift-exponent.jpg", "truncated or corrupt JPEG"},
      // A Huffman table declaring more than 256 codes: stb_image indexed past its table.
      {"crash-dht-overflow.jpg", "corrupt JPEG (Bogus Huffman table definition)"},
      {"crash-dht-overflow-2.jpg", "truncated JPEG (no end-of-image marker)"},
      {"crash-dht-truncated.jpg", "truncated JPEG (no end-of-image marker)"},
      {"crash-dht-after-fill.jpg", "corrupt JPEG (Not a JPEG file: starts with 0xff 0xff)"},
  };
  for (const Case& c : cases) {
    INFO(c.file);
    const std::string path = (dir / c.file).string();
    const auto t0 = std::chrono::steady_clock::now();
    std::string e;
    try {
      vksd::read_image(path, 3);
    } catch (const vksd::Error& x) {
      e = x.what();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(e.find(c.message) != std::string::npos);
    CHECK(e.find(path) != std::string::npos);
    CHECK(s < 2.0);
  }
}

TEST_CASE("JPEG: a progressive file whose scans revisit the image hundreds of times is refused, not decoded for seconds") {
  // Flat 2048x2048 gray: one DC scan, then each of the 63 AC coefficients in its own band,
  // first at Al = 5 and refined 4..0: 379 valid scans, each an end-of-band run over all 65,536
  // blocks that costs a few bytes of file and a full pass of the decoder.
  vksd::Image flat(2048, 2048, 1);
  std::fill(flat.pixels.begin(), flat.pixels.end(), (uint8_t)128);
  std::vector<jpeg_scan_info> scans;
  scans.push_back(jpeg_scan_info{1, {0}, 0, 0, 0, 0});
  for (int k = 1; k < 64; ++k) {
    scans.push_back(jpeg_scan_info{1, {0}, k, k, 0, 5});
    for (int al = 4; al >= 0; --al) scans.push_back(jpeg_scan_info{1, {0}, k, k, al + 1, al});
  }
  const std::string bomb = encode_jpeg(flat, &scans);
  MESSAGE("progressive bomb: " << scans.size() << " scans in " << bomb.size() << " bytes");
  const std::string e = error_of(bomb, 1);
  CHECK(e.find("progressive scans would visit each 8x8 block more than 32 times") != std::string::npos);
  // The same picture with libjpeg's ordinary progressive script decodes.
  const vksd::Image ok = vksd::decode_image(encode_jpeg(flat, nullptr, true), "ok.jpg", 1);
  CHECK(ok.width == 2048);
  CHECK(max_abs_diff(ok.pixels, flat.pixels) == 0);
}

TEST_CASE("JPEG: an arithmetic-coded file is refused by name, as stb_image did") {
  const vksd::Image img = gradient(16, 16);
  std::string jpg = encode_jpeg(img);
  // Turn the baseline frame marker (SOF0, 0xFFC0) into the arithmetic one (SOF9, 0xFFC9).
  const size_t sof = jpg.find("\xff\xc0");
  REQUIRE(sof != std::string::npos);
  jpg[sof + 1] = (char)0xc9;
  CHECK(error_of(jpg).find("arithmetic-coded JPEGs are not supported") != std::string::npos);
}
