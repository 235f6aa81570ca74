// decode_image: images that arrive as bytes (the server's base64 uploads), not files.
#include <doctest/doctest.h>

#include <string>

#include "runtime/error.h"
#include "runtime/io/image_io.h"

TEST_CASE("decode_image: PNG bytes give back the encoded pixels, converted to the asked channels, garbage is an Error naming the source") {
  vksd::Image rgb(5, 3, 3);
  for (size_t i = 0; i < rgb.pixels.size(); ++i) rgb.pixels[i] = (uint8_t)(i * 37 + 11);
  const auto png = vksd::encode_png(rgb, {{"parameters", "x"}});
  const vksd::Image back = vksd::decode_image(png.data(), png.size(), 3, "upload");
  CHECK(back.width == 5);
  CHECK(back.height == 3);
  CHECK(back.channels == 3);
  CHECK(back.pixels == rgb.pixels);
  // Gray from RGB: stb's luma rule, (77 r + 150 g + 29 b) >> 8.
  const vksd::Image gray = vksd::decode_image(png.data(), png.size(), 1, "mask");
  REQUIRE(gray.channels == 1);
  for (int k = 0; k < 15; ++k) {
    const uint8_t* p = &rgb.pixels[(size_t)k * 3];
    CHECK(gray.pixels[(size_t)k] == (uint8_t)((p[0] * 77 + p[1] * 150 + p[2] * 29) >> 8));
  }
  const std::string junk = "not an image at all";
  try {
    vksd::decode_image((const uint8_t*)junk.data(), junk.size(), 3, "init_images");
    FAIL("garbage decoded");
  } catch (const vksd::Error& e) {
    CHECK(std::string(e.what()).find("init_images") != std::string::npos);
  }
  CHECK_THROWS_AS(vksd::decode_image(png.data(), png.size(), 2, "x"), vksd::Error);
}
