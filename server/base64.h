// Base64 (RFC 4648, standard alphabet, '=' padding): how the A1111 web API carries images in JSON.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vksd::server {

std::string base64_encode(const uint8_t* data, size_t size);
inline std::string base64_encode(const std::vector<uint8_t>& bytes) { return base64_encode(bytes.data(), bytes.size()); }

// Decodes base64, ignoring ASCII whitespace and accepting missing padding. A data URL prefix
// ("data:image/png;base64,"), which A1111 clients often send, is skipped. nullopt when the
// text holds anything else.
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text);

}  // namespace vksd::server
