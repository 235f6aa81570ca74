#include "runtime/text/prompt_syntax.h"

#include <cctype>

namespace vksd {

// The end of the bracket group opened at `open` ('['), or npos when it is never closed;
// escaped brackets do not count. `colon`/`bar`: a ':' or '|' at the group's own depth.
static size_t close_bracket(std::string_view p, size_t open, bool& colon, bool& bar) {
  int depth = 0;
  colon = bar = false;
  for (size_t i = open; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '[' || c == '(') ++depth;
    else if (c == ']' || c == ')') {
      if (--depth == 0) return c == ']' ? i : std::string_view::npos;
    } else if (depth == 1 && c == ':') colon = true;
    else if (depth == 1 && c == '|') bar = true;
  }
  return std::string_view::npos;
}

std::vector<UnsupportedSyntax> find_unsupported_syntax(std::string_view p) {
  std::vector<UnsupportedSyntax> out;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '<') {
      // <lora:NAME:W> is supported (runtime/text/lora_tags.h): the pipeline loads the LoRA.
      for (const char* net : {"lyco:", "hypernet:"}) {
        const std::string_view tag(net);
        if (p.substr(i + 1, tag.size()) != tag) continue;
        const size_t end = p.find('>', i);
        const std::string text(p.substr(i, end == std::string_view::npos ? std::string_view::npos : end + 1 - i));
        out.push_back({tag == "hypernet:" ? "hypernetwork" : "LyCORIS", text, i});
        if (end != std::string_view::npos) i = end;
        break;
      }
    } else if (c == '[') {
      bool colon = false, bar = false;
      const size_t end = close_bracket(p, i, colon, bar);
      if (end != std::string_view::npos && (colon || bar)) {
        out.push_back({colon ? "prompt editing" : "alternation", std::string(p.substr(i, end + 1 - i)), i});
        i = end;
      }
    } else if (c == 'A' && p.substr(i, 3) == "AND" && (i == 0 || std::isspace((unsigned char)p[i - 1])) &&
               (i + 3 == p.size() || std::isspace((unsigned char)p[i + 3]))) {
      out.push_back({"composable diffusion (AND)", "AND", i});
    }
  }
  return out;
}

static const char* why(const std::string& construct) {
  if (construct == "LyCORIS") return "vksd reads LoRA / LoCon files through <lora:NAME:W> tags; a <lyco:> tag would be read as prompt text";
  if (construct == "hypernetwork") return "vksd does not load hypernetworks; the tag would be read as prompt text";
  if (construct == "prompt editing") return "vksd does not switch prompts during sampling; it would be read as de-emphasised text";
  if (construct == "alternation") return "vksd does not alternate prompts per step; it would be read as de-emphasised text";
  return "vksd encodes one prompt; AND would be read as the word 'and'";
}

std::string describe_unsupported(const std::vector<UnsupportedSyntax>& found, const std::string& which) {
  std::string s;
  for (const auto& f : found) s += which + ": " + f.construct + " '" + f.text + "' is not supported: " + why(f.construct) + "\n";
  return s;
}

}  // namespace vksd
