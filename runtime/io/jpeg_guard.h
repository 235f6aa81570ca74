// Checks on a JPEG's header segments made before stb_image sees the file. Debian 12's
// stb_image (libstb-dev 0.0~git20220908) indexes past its 257-entry Huffman size table when a
// DHT segment declares more than 256 codes (found by tests/fuzz/fuzz_image; regression input
// tests/fuzz/corpus/image/crash-dht-overflow.jpg): such files are refused here as corrupt.
#pragma once
#include <string>

namespace vksd {

// "" when the header segments up to the scan look sane, else what is wrong.
std::string jpeg_header_problem(const std::string& bytes);

}  // namespace vksd
