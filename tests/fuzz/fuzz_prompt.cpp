// libFuzzer harness: the prompt-emphasis parser ((word:1.2), [word], BREAK, escapes) and, when a
// CLIP vocabulary is available ($VKSD_FUZZ_VOCAB), the tokenizer and 75-token chunking of the
// same text. Must only ever throw vksd::Error.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "runtime/error.h"
#include "runtime/text/prompt.h"
#include "runtime/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<vksd::Tokenizer> tok = [] {
    const char* v = std::getenv("VKSD_FUZZ_VOCAB");
    return v ? std::make_unique<vksd::Tokenizer>(vksd::Tokenizer::load(v)) : nullptr;
  }();
  const std::string text((const char*)data, size);
  try {
    (void)vksd::parse_prompt_emphasis(text);
  } catch (const vksd::Error&) {
  }
  if (tok) try {
      (void)vksd::tokenize_weighted(*tok, text);
    } catch (const vksd::Error&) {
    }
  return 0;
}
