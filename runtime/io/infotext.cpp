#include "runtime/io/infotext.h"

#include <nettle/sha2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/error.h"
#include "runtime/io/json.h"

namespace fs = std::filesystem;

namespace vksd {

std::optional<std::string> Infotext::get(const std::string& key) const {
  for (const auto& [k, v] : params)
    if (k == key) return v;
  return std::nullopt;
}

// The generation parameters A1111's txt2img/img2img write and read back (modules/processing.py
// create_infotext and infotext_utils' setting mapping); vksd writes a subset of them.
static const char* const kA1111Keys[] = {
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Size", "Model hash",
    "Model", "VAE hash", "VAE", "Variation seed", "Variation seed strength", "Seed resize from",
    "Denoising strength", "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio",
    "Token merging ratio hr", "Init image hash", "RNG", "NGMS", "Tiling", "Version", "Eta", "Eta DDIM",
    "Schedule max sigma", "Schedule min sigma", "Schedule rho", "Noise multiplier", "Mask blur",
    "Inpaint area", "Masked area padding", "Hires upscale", "Hires steps", "Hires upscaler",
    "Face restoration", "Lora hashes", "TI hashes", "Pad conds", "Discard penultimate sigma",
    "Batch size", "Batch pos", "Resize mode"};

bool a1111_known_key(const std::string& key) {
  return std::any_of(std::begin(kA1111Keys), std::end(kA1111Keys), [&](const char* k) { return key == k; });
}

std::string a1111_quote(const std::string& value) {
  if (value.find_first_of(",:\n") == std::string::npos) return value;
  return "\"" + json_escape(value) + "\"";
}

std::string format_infotext(const Infotext& info) {
  std::string params;
  for (const auto& [k, v] : info.params) {
    if (!a1111_known_key(k)) continue;
    if (!params.empty()) params += ", ";
    params += k + ": " + a1111_quote(v);
  }
  std::string s = info.prompt;
  if (!info.negative_prompt.empty()) s += "\nNegative prompt: " + info.negative_prompt;
  s += "\n" + params;
  // Python's str.strip(): surrounding whitespace goes.
  const auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

static std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n\f\v"), e = s.find_last_not_of(" \t\r\n\f\v");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

static bool word_char(char c) { return std::isalnum((unsigned char)c) || c == '_'; }

// The "Key: value" pairs of a parameters line, scanned the way A1111's pattern
//   \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)
// matches them: a key of word characters, spaces, '-' and '/', then a JSON-quoted value
// followed by ',' or the end, else everything up to the next ','.
static std::vector<std::pair<std::string, std::string>> scan_params(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  const size_t n = line.size();
  while (i < n) {
    while (i < n && std::isspace((unsigned char)line[i])) ++i;
    size_t k = i;
    if (k >= n || !word_char(line[k])) {  // no key here: skip to the next pair
      i = line.find(',', i);
      if (i == std::string::npos) break;
      ++i;
      continue;
    }
    while (k < n && (word_char(line[k]) || line[k] == ' ' || line[k] == '-' || line[k] == '/')) ++k;
    if (k >= n || line[k] != ':' || k - i < 2) {
      i = line.find(',', i);
      if (i == std::string::npos) break;
      ++i;
      continue;
    }
    std::string key = line.substr(i, k - i);
    size_t v = k + 1;
    while (v < n && std::isspace((unsigned char)line[v])) ++v;
    std::string value;
    bool quoted = false;
    if (v < n && line[v] == '"') {
      size_t q = v + 1;
      while (q < n && line[q] != '"') q += line[q] == '\\' ? 2 : 1;
      if (q < n && q > v + 1 && (q + 1 == n || line[q + 1] == ',')) {
        value = line.substr(v, q + 1 - v);
        i = q + 2;
        quoted = true;
      }
    }
    if (!quoted) {
      size_t c = line.find(',', v);
      value = line.substr(v, c == std::string::npos ? std::string::npos : c - v);
      i = c == std::string::npos ? n : c + 1;
    }
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      try {  // A1111's unquote(): json.loads, the raw text when that fails
        value = Json::parse(value).as_string();
      } catch (const Error&) {
      }
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

Infotext parse_infotext(const std::string& text) {
  std::vector<std::string> lines;
  {
    std::string s = strip(text);
    size_t p = 0;
    while (true) {
      size_t nl = s.find('\n', p);
      lines.push_back(s.substr(p, nl == std::string::npos ? std::string::npos : nl - p));
      if (nl == std::string::npos) break;
      p = nl + 1;
    }
  }
  Infotext r;
  auto params = scan_params(lines.back());
  if (params.size() >= 3) {
    r.params = std::move(params);
    lines.pop_back();
  }
  bool negative = false;
  for (auto line : lines) {
    line = strip(line);
    if (line.rfind("Negative prompt:", 0) == 0) {
      negative = true;
      line = strip(line.substr(16));
    }
    std::string& dst = negative ? r.negative_prompt : r.prompt;
    dst += (dst.empty() ? "" : "\n") + line;
  }
  return r;
}

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read '" + path + "' to hash it");
  sha256_ctx ctx;
  sha256_init(&ctx);
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), (std::streamsize)buf.size());
    if (f.gcount() > 0) sha256_update(&ctx, (size_t)f.gcount(), reinterpret_cast<const uint8_t*>(buf.data()));
  }
  if (f.bad()) fail("error reading '" + path + "' to hash it");
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, sizeof digest, digest);
  std::string hex;
  char b[3];
  for (uint8_t d : digest) std::snprintf(b, sizeof b, "%02x", d), hex += b;
  return hex;
}

static fs::path hash_cache_file() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "vksd" / "model_hashes.tsv";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "vksd" / "model_hashes.tsv";
  return {};
}

std::string a1111_model_hash(const std::string& checkpoint_path) {
  struct stat st {};
  if (::stat(checkpoint_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return "";
  std::error_code ec;
  const std::string abs = fs::absolute(checkpoint_path, ec).lexically_normal().string();
  // One line per file: path \t size \t mtime-ns \t sha256.
  const std::string stamp = std::to_string((long long)st.st_size) + "\t" +
                            std::to_string((long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
  const fs::path cache = hash_cache_file();
  std::vector<std::string> kept;
  if (!cache.empty()) {
    std::ifstream in(cache);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(abs + "\t", 0) == 0) {
        const std::string rest = line.substr(abs.size() + 1);
        if (rest.size() == stamp.size() + 65 && rest.compare(0, stamp.size(), stamp) == 0 && rest[stamp.size()] == '\t')
          return rest.substr(stamp.size() + 1, 10);
        continue;  // stale entry for this path
      }
      kept.push_back(line);
    }
  }
  std::string full;
  try {
    full = sha256_file(checkpoint_path);
  } catch (const Error&) {
    return "";
  }
  if (!cache.empty() && abs.find('\t') == std::string::npos && abs.find('\n') == std::string::npos) {
    kept.push_back(abs + "\t" + stamp + "\t" + full);
    fs::create_directories(cache.parent_path(), ec);
    const fs::path tmp = cache.string() + ".tmp-" + std::to_string((long)::getpid());
    {
      std::ofstream out(tmp);
      for (const auto& l : kept) out << l << "\n";
    }
    fs::rename(tmp, cache, ec);  // a cache that cannot be written only costs time
    if (ec) fs::remove(tmp, ec);
  }
  return full.substr(0, 10);
}

}  // namespace vksd
