#include "cli/prompt_check.h"

#include <cstdio>

#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/text/prompt_syntax.h"

namespace vksd::cli {

void check_prompt_syntax(const std::string& prompt, const std::string& negative, bool strict, bool json) {
  const std::string msg = describe_unsupported(find_unsupported_syntax(prompt), "prompt") +
                          describe_unsupported(find_unsupported_syntax(negative), "negative prompt");
  if (msg.empty()) return;
  if (strict) fail(msg.substr(0, msg.size() - 1) + "\n(--strict refuses this; without it vksd warns and goes on)");
  if (json) {
    size_t p = 0;
    for (size_t nl; (nl = msg.find('\n', p)) != std::string::npos; p = nl + 1)
      std::printf("{\"event\":\"warning\",\"message\":\"%s\"}\n", json_escape(msg.substr(p, nl - p)).c_str());
    std::fflush(stdout);
  } else {
    size_t p = 0;
    for (size_t nl; (nl = msg.find('\n', p)) != std::string::npos; p = nl + 1)
      std::fprintf(stderr, "warning: %s\n", msg.substr(p, nl - p).c_str());
  }
}

}  // namespace vksd::cli
