#include "runtime/io/jpeg_guard.h"

#include <algorithm>
#include <cstdint>

namespace vksd {

// Walks the file the way stb_image looks for markers (any bytes between segments and the
// entropy-coded scan data are skipped up to the next 0xFF that starts a marker), so that every
// DHT segment stb_image would process is checked, including ones after a scan.
std::string jpeg_header_problem(const std::string& b) {
  auto at = [&](size_t i) { return (uint8_t)b[i]; };
  size_t pos = 0;  // stb_image takes any number of 0xFF fill bytes before the SOI marker
  while (pos + 1 < b.size() && at(pos) == 0xff && at(pos + 1) == 0xff) ++pos;
  if (pos + 1 >= b.size() || at(pos) != 0xff || at(pos + 1) != 0xd8) return "";  // not a JPEG
  pos += 2;
  while (pos + 1 < b.size()) {
    if (at(pos) != 0xff) {
      ++pos;
      continue;
    }
    const uint8_t marker = at(pos + 1);
    if (marker == 0xff) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xd9) return "";  // end of image
    if (marker == 0x00 || marker == 0x01 || marker == 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;  // stuffed byte, TEM, SOI, restart: no length
      continue;
    }
    if (pos + 4 > b.size()) return "";
    const size_t len = (size_t)at(pos + 2) << 8 | at(pos + 3);
    const size_t end = pos + 2 + std::max<size_t>(len, 2);
    if (marker == 0xc4) {  // DHT: tables of [class/id, 16 counts, sum(counts) symbols]
      size_t p = pos + 4;
      while (p < std::min(end, b.size())) {
        unsigned total = 0;  // bytes past the end count as 0, as stb_image reads them
        for (size_t i = 0; i < 16 && p + 1 + i < b.size(); ++i) total += at(p + 1 + i);
        if (total > 256) return "corrupt JPEG (a Huffman table declares " + std::to_string(total) + " codes, at most 256 exist)";
        p += 17 + total;
      }
    }
    pos = end;
  }
  return "";
}

}  // namespace vksd
