// SDXL's size conditioning from the command line (vksd generate; the server and the viewer set
// the same GenerateParams fields): --original-size WxH, --target-size WxH, --crop-coords TOP,LEFT.
// Unset = the image size and crop 0,0 (SDXL's usual choice); models without size conditioning
// ignore them.
#pragma once
#include <string>

namespace vksd {
struct GenerateParams;
namespace cli {

struct SizeFlags {
  std::string original_size, target_size, crop_coords;  // as given; "" = default
};

// Error naming the flag for a malformed value (not WxH / TOP,LEFT, not positive / negative crop).
void apply_size_flags(const SizeFlags& f, GenerateParams& p);

}  // namespace cli
}  // namespace vksd
