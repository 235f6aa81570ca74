// The key prefix of each network in an LDM single-file checkpoint — the one place they are
// written. The loaders map every other layout (diffusers folders, OpenCLIP, SDXL's conditioner)
// onto these names, and the nn builders read their weights under them.
#pragma once

namespace vksd {

inline constexpr const char* kUNetPrefix = "model.diffusion_model.";
inline constexpr const char* kVaePrefix = "first_stage_model.";
inline constexpr const char* kClipPrefix = "cond_stage_model.transformer.text_model.";

}  // namespace vksd
