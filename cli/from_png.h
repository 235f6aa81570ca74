// `vksd generate --from-png FILE`: an image's A1111 parameters turned back into generate flags.
#pragma once
#include <string>
#include <vector>

namespace vksd::cli {

// The flags that re-run the image FILE (its "parameters" text: prompt, negative prompt,
// steps, sampler, CFG scale, seed, size, clip skip, eta; denoising strength only when the
// user's own flags give an --init-img). An Error names the file when it has no parameters.
std::vector<std::string> flags_from_png(const std::string& png_path, const std::vector<std::string>& user_args);

// argv with every "--from-png FILE" (or --from-png=FILE) replaced by flags_from_png(FILE),
// placed before the user's flags so that explicit flags win (the last value of a flag counts).
// argv[0] (the command name) stays first.
std::vector<std::string> expand_from_png(int argc, char** argv);

}  // namespace vksd::cli
