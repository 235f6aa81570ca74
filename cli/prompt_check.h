// The prompt syntax check of `vksd generate`: A1111 constructs vksd does not implement
// (runtime/text/prompt_syntax.h) are a warning on stderr, or with --strict an Error.
#pragma once
#include <string>

namespace vksd::cli {

void check_prompt_syntax(const std::string& prompt, const std::string& negative, bool strict, bool json);

}  // namespace vksd::cli
