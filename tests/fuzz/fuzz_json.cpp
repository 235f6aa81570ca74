// libFuzzer harness: the JSON reader every config goes through (vksd model config, diffusers
// config.json, tokenizer vocab.json, safetensors headers). Must only ever throw vksd::Error; a
// parsed value is walked completely and re-read through every typed accessor.
#include <cstdint>
#include <string>

#include "runtime/error.h"
#include "runtime/io/json.h"

static void walk(const vksd::Json& j, int depth) {
  if (depth > 300) __builtin_trap();  // the parser's nesting limit must hold
  if (j.is_object())
    for (const auto& [k, v] : j.as_object()) {
      (void)j.find(k);
      walk(v, depth + 1);
    }
  else if (j.is_array())
    for (const auto& v : j.as_array()) walk(v, depth + 1);
  try {
    (void)j.as_int("x");
  } catch (const vksd::Error&) {
  }
  try {
    (void)j.as_string("x");
  } catch (const vksd::Error&) {
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    walk(vksd::Json::parse(std::string((const char*)data, size)), 0);
  } catch (const vksd::Error&) {
  }
  return 0;
}
