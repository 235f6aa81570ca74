#include "runtime/text/lora_tags.h"

#include <cmath>
#include <cstdlib>

#include "runtime/error.h"

namespace vksd {

PromptLoras extract_lora_tags(const std::string& prompt) {
  static const std::string open = "<lora:";
  PromptLoras r;
  size_t pos = 0;
  while (true) {
    const size_t b = prompt.find(open, pos);
    if (b == std::string::npos) break;
    const size_t e = prompt.find('>', b);
    if (e == std::string::npos) fail("prompt: '" + prompt.substr(b) + "' is an unclosed <lora:NAME:WEIGHT> tag");
    const std::string tag = prompt.substr(b, e + 1 - b);
    const std::string body = prompt.substr(b + open.size(), e - b - open.size());
    r.text += prompt.substr(pos, b - pos);
    pos = e + 1;
    LoraTag t;
    const size_t colon = body.find(':');
    t.name = body.substr(0, colon);
    if (t.name.empty()) fail("prompt: " + tag + " names no LoRA (expected <lora:NAME:WEIGHT>)");
    if (colon != std::string::npos) {
      const std::string w = body.substr(colon + 1);
      char* end = nullptr;
      t.weight = std::strtod(w.c_str(), &end);
      if (w.empty() || *end || !std::isfinite(t.weight))
        fail("prompt: " + tag + ": the weight '" + w + "' is not a number (expected <lora:NAME:WEIGHT>, e.g. <lora:" +
             t.name + ":0.8>)");
    }
    r.loras.push_back(t);
  }
  r.text += prompt.substr(pos);
  return r;
}

}  // namespace vksd
