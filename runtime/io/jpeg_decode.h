// JPEG decoding through libjpeg-turbo (Debian's libjpeg62-turbo) instead of stb_image. Debian 12's
// stb_image (libstb-dev 0.0~git20220908) has undefined behaviour on corrupt JPEGs — an index past
// its Huffman size table, a 32-bit shift by 33 in its bit reader — and decodes a JPEG whose data
// is missing as if it were zeros, so a few hundred bytes declaring a 16384x16384 frame kept a
// decoder busy for seconds (all found by tests/fuzz; inputs in tests/fuzz/corpus/image). stb
// cannot be patched in a Debian package; libjpeg-turbo reports corrupt data as warnings, which
// vksd treats as errors, and lets a caller bound its memory and its scans.
#pragma once
#include <string>
#include <string_view>

#include "runtime/io/image_io.h"

namespace vksd {

// libjpeg's working memory (progressive coefficient buffers: 128 bytes per 8x8 block and
// component) is capped here; a 16384x16384 4:2:0 progressive JPEG needs 768 MiB.
constexpr size_t kJpegMaxWorkingBytes = size_t(1) << 30;
// A progressive JPEG's scans may together visit each 8x8 block at most this many times
// (libjpeg's own progressive scripts visit each ≤ 10 times). A scan of end-of-band runs costs
// a few hundred bytes for a whole 16384x16384 frame, so without a bound a 64 KB file could make
// the decoder walk billions of blocks. Images up to kJpegFreeBlockVisits visits are not limited.
constexpr int kJpegMaxScanPasses = 32;
constexpr unsigned long long kJpegFreeBlockVisits = 1ull << 24;

// Starts with the JPEG start-of-image marker (after any 0xFF fill bytes).
bool is_jpeg(std::string_view bytes);

// Decode a JPEG to `channels` (1 gray = the Y plane, 3 RGB, 4 RGBA with opaque alpha). An Error
// naming `name` when the file is corrupt or cut short (every libjpeg warning but "extraneous
// bytes before a marker" is an error: such files decode to garbage), arithmetic-coded (stb_image
// never read those either), wider or taller than kMaxImageSide, or beyond the bounds above.
Image decode_jpeg(std::string_view bytes, const std::string& name, int channels);

}  // namespace vksd
