// The key prefix of each network in an LDM single-file checkpoint — the one place they are
// written. The loaders map every other layout (diffusers folders, OpenCLIP, SDXL's conditioner)
// onto these names, and the nn builders read their weights under them.
#pragma once
#include <string>
#include <vector>

namespace vksd {

inline constexpr const char* kUNetPrefix = "model.diffusion_model.";
inline constexpr const char* kVaePrefix = "first_stage_model.";
inline constexpr const char* kClipPrefix = "cond_stage_model.transformer.text_model.";

// The VAE's two halves, loaded separately: a text-to-image run needs only the decoder (the
// encoder is about 40% of the VAE's weights).
inline const std::vector<std::string> kVaeDecoderPrefixes = {"first_stage_model.decoder.", "first_stage_model.post_quant_conv."};
inline const std::vector<std::string> kVaeEncoderPrefixes = {"first_stage_model.encoder.", "first_stage_model.quant_conv."};

// Whether a tensor name starts with one of these prefixes (a network's or a half's).
inline bool has_prefix(const std::string& name, const std::vector<std::string>& prefixes) {
  for (const std::string& p : prefixes)
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

}  // namespace vksd
