// libFuzzer harness: the image and mask loaders (decode_image: header check, size limit,
// truncation detection, stb_image decoding) as RGB (--init-img) and grayscale (--mask).
#include <cstdint>
#include <string>

#include "runtime/error.h"
#include "runtime/io/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes((const char*)data, size);
  for (int channels : {3, 1}) try {
      vksd::Image im = vksd::decode_image(bytes, "fuzz", channels);
      if (im.pixels.size() != (size_t)im.width * im.height * channels) __builtin_trap();
    } catch (const vksd::Error&) {
    }
  return 0;
}
