// `vksd info` on a LoRA file: its format, rank, alpha and which layers it changes.
#pragma once
#include <string>

namespace vksd::cli {

// When `path` is a .safetensors file holding a LoRA: prints its description and returns true;
// false for anything else (a checkpoint). A LoRA that vksd would refuse is an Error.
bool print_lora_info(const std::string& path);

}  // namespace vksd::cli
