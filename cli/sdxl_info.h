// `vksd info` on an SDXL base single file: recognised, described (both text encoders, the UNet's
// SDXL parts, parameters and weight memory), and marked as not yet runnable.
#pragma once
#include <string>

namespace vksd::cli {

// When `path` is a single .safetensors file holding an SDXL base checkpoint: prints its
// description and returns true; false for anything else.
bool print_sdxl_info(const std::string& path);

}  // namespace vksd::cli
