// The "parameters" text AUTOMATIC1111 stores in its PNGs ("infotext"), written and read the
// way A1111 does, so that its PNG Info tab, civitai and vksd itself (--from-png) understand it:
//
//   a photo of a cat
//   Negative prompt: blurry
//   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: 6ce0161689
//
// The last line is "Key: value" pairs joined by ", "; a value containing ',', ':' or a newline is
// written as a JSON string (A1111's quote()), and only keys A1111 knows are written, so that no
// other tool trips over a vksd-only field.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vksd {

struct Infotext {
  std::string prompt, negative_prompt;
  std::vector<std::pair<std::string, std::string>> params;  // in order, values unquoted

  // The value of `key`, if present.
  std::optional<std::string> get(const std::string& key) const;
};

// Whether A1111 reads `key` from an infotext (the keys of its generation parameters).
bool a1111_known_key(const std::string& key);
// A1111's quote(): the value itself, or a JSON string (non-ASCII kept as UTF-8) when it
// contains ',', ':' or a newline.
std::string a1111_quote(const std::string& value);
// The text as A1111's create_infotext writes it; keys A1111 does not know are dropped.
std::string format_infotext(const Infotext& info);
// A1111's parse_generation_parameters: the last line holds the parameters when it has at
// least three "Key: value" pairs; lines after "Negative prompt:" are the negative prompt.
Infotext parse_infotext(const std::string& text);

// SHA-256 of a file as 64 lowercase hex digits (streamed; Error naming the file when unreadable).
std::string sha256_file(const std::string& path);
// A1111's "Model hash": the first 10 hex digits of the checkpoint file's SHA-256. Cached in
// $XDG_CACHE_HOME/vksd/model_hashes.tsv (else ~/.cache/...) by path, size and modification time,
// since hashing a 4 GB checkpoint takes seconds. "" for a folder (diffusers) or unreadable file.
std::string a1111_model_hash(const std::string& checkpoint_path);

}  // namespace vksd
