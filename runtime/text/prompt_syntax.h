// A1111 prompt syntax that vksd does not implement yet, found so that it is not silently
// misread: without this, "<hypernet:x:0.8>" is tokenized as text and "[a:b:0.5]" / "[a|b]" as
// de-emphasised text (prompt.h's '[' rule), and the user gets a different image with no word why.
//
//   <lyco:...>, <hypernet:...>                 extra networks other than <lora:NAME:W> (which is
//                                              supported: runtime/text/lora_tags.h)
//   [a:b:N], [a:N], [a::N]                     prompt editing (switch text at step N / fraction N)
//   [a|b|c]                                    alternation (a different prompt every step)
//   a AND b                                    composable diffusion (several conditionings)
// Escaped brackets (\[ \]) are literal text, as in prompt.h.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace vksd {

struct UnsupportedSyntax {
  std::string construct;  // "LyCORIS", "hypernetwork", "prompt editing", "alternation", "composable diffusion (AND)"
  std::string text;       // the piece of the prompt, e.g. "<lora:detail:0.8>"
  size_t offset = 0;      // byte offset in the prompt
};

// Every unsupported construct in `prompt`, in order of appearance.
std::vector<UnsupportedSyntax> find_unsupported_syntax(std::string_view prompt);

// One line per construct: "prompt: prompt editing '[cat:dog:0.5]' is not supported: ...".
// `which` names the prompt ("prompt", "negative prompt").
std::string describe_unsupported(const std::vector<UnsupportedSyntax>& found, const std::string& which);

}  // namespace vksd
