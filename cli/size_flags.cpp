#include "cli/size_flags.h"

#include <cstdlib>

#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"

namespace vksd::cli {

namespace {

// "AxB" (sep 'x') or "A,B" (sep ','): two integers within [lo, 16384].
void parse_pair(const std::string& flag, const std::string& v, char sep, long lo, int& a, int& b) {
  const size_t k = v.find(sep);
  auto num = [&](const std::string& s) {
    char* end = nullptr;
    const long r = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end || r < lo || r > 16384)
      fail(flag + " '" + v + "': expected " + (sep == 'x' ? "WIDTHxHEIGHT" : "TOP,LEFT") + " with numbers from " +
           std::to_string(lo) + " to 16384");
    return (int)r;
  };
  if (k == std::string::npos) num("");
  a = num(v.substr(0, k));
  b = num(v.substr(k + 1));
}

}  // namespace

void apply_size_flags(const SizeFlags& f, GenerateParams& p) {
  if (!f.original_size.empty()) parse_pair("--original-size", f.original_size, 'x', 1, p.original_width, p.original_height);
  if (!f.target_size.empty()) parse_pair("--target-size", f.target_size, 'x', 1, p.target_width, p.target_height);
  if (!f.crop_coords.empty()) parse_pair("--crop-coords", f.crop_coords, ',', 0, p.crop_top, p.crop_left);
}

}  // namespace vksd::cli
