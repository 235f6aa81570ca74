// A1111's extra-network prompt syntax for LoRAs: "<lora:NAME:WEIGHT>" (or "<lora:NAME>",
// weight 1) anywhere in a prompt names a LoRA to apply; the tag itself is removed from the text
// the text encoder sees. NAME is a file name without ".safetensors", looked up in the LoRA folder.
#pragma once
#include <string>
#include <vector>

namespace vksd {

struct LoraTag {
  std::string name;
  double weight = 1.0;
};

struct PromptLoras {
  std::string text;            // the prompt without its <lora:...> tags
  std::vector<LoraTag> loras;  // in the order they appear
};

// Splits the tags off. A malformed tag ("<lora:>", "<lora:x:y>" with y not a number, more than
// two fields) is an Error quoting it; other "<...>" text is left alone.
PromptLoras extract_lora_tags(const std::string& prompt);

}  // namespace vksd
