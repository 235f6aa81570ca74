// CLIP byte-level BPE (see tokenizer.h): vocabulary loading, the pre-tokenizer, BPE merging.
#include "runtime/text/tokenizer.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "runtime/error.h"
#include "runtime/io/file_check.h"
#include "runtime/io/json.h"
#include "runtime/text/text_clean.h"

namespace fs = std::filesystem;

namespace vksd {

namespace {

constexpr const char* kBos = "<|startoftext|>";
constexpr const char* kEos = "<|endoftext|>";
constexpr const char* kEndOfWord = "</w>";

// GPT-2/CLIP byte stand-ins: the 188 printable Latin-1 bytes stand for themselves, the other 68
// (controls, space, DEL, NBSP, soft hyphen, ...) map to U+0100 + n in byte order, so that every
// byte is a visible, non-space character and BPE symbols never contain whitespace.
bool byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

struct ByteMap {
  char32_t to_char[256];
  std::vector<int> order;  // bytes in vocabulary order: printable first, then the rest
  ByteMap() {
    for (int b = 0; b < 256; ++b)
      if (byte_is_printable(b)) {
        to_char[b] = (char32_t)b;
        order.push_back(b);
      }
    int n = 0;
    for (int b = 0; b < 256; ++b)
      if (!byte_is_printable(b)) {
        to_char[b] = (char32_t)(256 + n++);
        order.push_back(b);
      }
  }
  int from_char(char32_t c) const {
    if (c < 256 && byte_is_printable((int)c)) return (int)c;
    if (c >= 256 && c < 256 + 68)
      for (int b = 0; b < 256; ++b)
        if (to_char[b] == c) return b;
    return -1;
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

std::string byte_symbol(int b) {
  std::string s;
  utf8_append(s, byte_map().to_char[b]);
  return s;
}

// Whole file, transparently gunzipped (zlib's gzread passes plain files through unchanged).
// A gzip stream that ends early is an error (zlib returns the data up to the cut and only
// records "unexpected end of file"; gzclose then reports Z_BUF_ERROR): a vocabulary cut short
// would otherwise tokenize prompts wrongly without a word.
std::string read_maybe_gzipped(const std::string& path) {
  const int fd = open_regular_file(path, "tokenizer file");  // never blocks on a FIFO
  gzFile f = gzdopen(fd, "rb");
  if (!f) {
    ::close(fd);
    fail("cannot open tokenizer file " + path);
  }
  std::string data;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    int err = Z_OK;
    const char* msg = gzerror(f, &err);
    if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
      std::string m = msg ? msg : "read error";
      if (m.rfind("<fd:", 0) == 0 && m.find(": ") != std::string::npos) m = m.substr(m.find(": ") + 2);  // gzdopen's "<fd:N>: "
      gzclose(f);
      fail("cannot read tokenizer file " + path + ": " + m + " (truncated or corrupt?)");
    }
    if (n == 0) break;
    data.append(buf, (size_t)n);
  }
  const int rc = gzclose(f);
  if (rc == Z_BUF_ERROR) fail("cannot read tokenizer file " + path + ": the gzip data ends early (truncated file)");
  if (rc != Z_OK) fail("cannot read tokenizer file " + path + ": gzclose failed (" + std::to_string(rc) + ")");
  return data;
}

std::string read_text_file(const std::string& path) { return read_regular_file(path, "tokenizer file"); }

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t b = 0;
  while (b <= text.size()) {
    size_t e = text.find('\n', b);
    if (e == std::string_view::npos) e = text.size();
    std::string_view line = text.substr(b, e - b);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    b = e + 1;
  }
  return lines;
}

// "a b" -> {"a", "b"}; anything else (one part, three parts) is malformed.
bool split_merge(std::string_view line, std::string_view& a, std::string_view& b) {
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size()) return false;
  a = line.substr(0, sp);
  b = line.substr(sp + 1);
  return b.find(' ') == std::string_view::npos;
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

// Case-insensitive match of an ASCII-lower-case literal at cps[i]. The `regex` module folds
// U+017F LATIN SMALL LETTER LONG S to 's', so "'ſ" is a contraction to it as well.
bool match_literal(const std::u32string& cps, size_t i, std::string_view lit) {
  if (i + lit.size() > cps.size()) return false;
  for (size_t k = 0; k < lit.size(); ++k) {
    char32_t c = cps[i + k];
    if (c >= U'A' && c <= U'Z') c += 32;
    if (c == 0x017f) c = U's';
    if (c != (char32_t)lit[k]) return false;
  }
  return true;
}

}  // namespace

std::string SdTokens::truncation_warning() const {
  if (!truncated) return {};
  return "prompt is " + std::to_string(prompt_tokens) + " tokens; the model sees only " +
         std::to_string(ids.size() - 2) + " \xe2\x80\x94 the rest is ignored";
}

// ---- construction --------------------------------------------------------------------------

void Tokenizer::add_merge(int32_t a, int32_t b, int32_t merged) {
  // A repeated pair keeps its last rank, as Python's dict(zip(merges, range(n))) does.
  merges_[pair_key(a, b)] = {(int32_t)merge_count_, merged};
  ++merge_count_;
}

void Tokenizer::finish(const std::string& where) {
  auto find = [&](const std::string& s) {
    auto it = ids_.find(s);
    if (it == ids_.end()) fail(where + ": vocabulary lacks the token '" + s + "'");
    return it->second;
  };
  for (int b = 0; b < 256; ++b) {
    byte_id_[b] = find(byte_symbol(b));
    byte_end_id_[b] = find(byte_symbol(b) + kEndOfWord);
  }
  bos_ = find(kBos);
  eos_ = find(kEos);
  // simple_tokenizer's cache starts with the two special tokens: typed into a prompt they
  // become BOS/EOS rather than being split into bytes.
  cache_->words[kBos] = {bos_};
  cache_->words[kEos] = {eos_};
}

Tokenizer Tokenizer::from_bpe_merges(std::string_view text, const std::string& source, size_t max_merges) {
  Tokenizer t;
  t.source_ = source;
  std::vector<std::string_view> lines = split_lines(text);
  while (!lines.empty() && lines.back().empty()) lines.pop_back();  // the file's final newline
  if (lines.size() < 2) fail(source + ": not a BPE merges file (no merges after the header line)");
  const size_t n = std::min(max_merges, lines.size() - 1);
  std::vector<std::pair<std::string_view, std::string_view>> pairs(n);
  for (size_t i = 0; i < n; ++i)
    if (!split_merge(lines[i + 1], pairs[i].first, pairs[i].second))
      fail(source + ": line " + std::to_string(i + 2) + " is not a merge 'a b': '" + std::string(lines[i + 1]) + "'");

  // Vocabulary order as simple_tokenizer builds it.
  std::vector<std::string> symbols;
  symbols.reserve(512 + n + 2);
  for (int b : byte_map().order) symbols.push_back(byte_symbol(b));
  for (int b : byte_map().order) symbols.push_back(byte_symbol(b) + kEndOfWord);
  for (auto& [a, b] : pairs) symbols.push_back(std::string(a) + std::string(b));
  symbols.push_back(kBos);
  symbols.push_back(kEos);
  t.symbols_ = std::move(symbols);
  // A repeated string keeps its last id (Python's dict(zip(vocab, range(len(vocab))))).
  for (size_t i = 0; i < t.symbols_.size(); ++i) t.ids_[t.symbols_[i]] = (int32_t)i;

  for (size_t i = 0; i < n; ++i) {
    auto ia = t.ids_.find(std::string(pairs[i].first));
    auto ib = t.ids_.find(std::string(pairs[i].second));
    if (ia == t.ids_.end() || ib == t.ids_.end())
      fail(source + ": merge on line " + std::to_string(i + 2) + " uses a symbol that no earlier merge made");
    t.add_merge(ia->second, ib->second, t.ids_.at(std::string(pairs[i].first) + std::string(pairs[i].second)));
  }
  t.finish(source);
  return t;
}

Tokenizer Tokenizer::from_vocab_and_merges(std::string_view vocab_json, std::string_view merges_txt,
                                           const std::string& source) {
  Tokenizer t;
  t.source_ = source;
  Json vocab = Json::parse(vocab_json);
  const auto& entries = vocab.as_object("vocab.json");
  t.symbols_.assign(entries.size(), std::string());
  std::vector<bool> seen(entries.size(), false);
  for (const auto& [token, id_json] : entries) {
    int64_t id = id_json.as_int("vocab.json id");
    if (id < 0 || id >= (int64_t)entries.size() || seen[(size_t)id])
      fail(source + ": vocab.json id " + std::to_string(id) + " of '" + token + "' is out of range or repeated (ids must be 0.." +
           std::to_string(entries.size() - 1) + ", each once)");
    seen[(size_t)id] = true;
    t.symbols_[(size_t)id] = token;
    t.ids_[token] = (int32_t)id;
  }
  std::vector<std::string_view> lines = split_lines(merges_txt);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.empty() || (i == 0 && line.substr(0, 8) == "#version")) continue;
    std::string_view a, b;
    if (!split_merge(line, a, b))
      fail(source + ": merges.txt line " + std::to_string(i + 1) + " is not a merge 'a b': '" + std::string(line) + "'");
    auto ia = t.ids_.find(std::string(a)), ib = t.ids_.find(std::string(b));
    auto im = t.ids_.find(std::string(a) + std::string(b));
    if (ia == t.ids_.end() || ib == t.ids_.end() || im == t.ids_.end())
      fail(source + ": merges.txt line " + std::to_string(i + 1) + " ('" + std::string(line) +
           "') names a symbol that vocab.json lacks");
    t.add_merge(ia->second, ib->second, im->second);
  }
  t.finish(source);
  return t;
}

Tokenizer Tokenizer::load(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / kClipBpeFileName)) return load((fs::path(path) / kClipBpeFileName).string());
    if (fs::exists(fs::path(path) / "vocab.json")) return load((fs::path(path) / "vocab.json").string());
    if (fs::exists(fs::path(path) / "tokenizer" / "vocab.json"))
      return load((fs::path(path) / "tokenizer" / "vocab.json").string());
    fail("no tokenizer vocabulary in folder " + path + " (expected " + kClipBpeFileName +
         " or vocab.json + merges.txt)");
  }
  if (!fs::exists(path, ec)) fail("tokenizer file not found: " + path);
  if (fs::path(path).extension() == ".json") {
    fs::path merges = fs::path(path).parent_path() / "merges.txt";
    if (!fs::exists(merges, ec)) fail("tokenizer: " + merges.string() + " is missing (vocab.json needs merges.txt beside it)");
    return from_vocab_and_merges(read_text_file(path), read_text_file(merges.string()), path);
  }
  return from_bpe_merges(read_maybe_gzipped(path), path);
}

// ---- encoding ------------------------------------------------------------------------------

std::vector<std::string> Tokenizer::split_words(std::string_view cleaned_text) {
  const std::u32string cps = utf8_decode(cleaned_text, "prompt");
  std::vector<std::string> words;
  size_t i = 0;
  auto emit = [&](size_t b, size_t e) {
    words.push_back(utf8_encode(std::u32string_view(cps).substr(b, e - b)));
    i = e;
  };
  while (i < cps.size()) {
    const char32_t c = cps[i];
    if (match_literal(cps, i, "<|startoftext|>")) {
      emit(i, i + 15);
    } else if (match_literal(cps, i, "<|endoftext|>")) {
      emit(i, i + 13);
    } else if (c == U'\'' && (match_literal(cps, i, "'s") || match_literal(cps, i, "'t") ||
                              match_literal(cps, i, "'m") || match_literal(cps, i, "'d"))) {
      emit(i, i + 2);
    } else if (c == U'\'' && (match_literal(cps, i, "'re") || match_literal(cps, i, "'ve") ||
                              match_literal(cps, i, "'ll"))) {
      emit(i, i + 3);
    } else if (is_unicode_letter(c)) {
      size_t e = i + 1;
      while (e < cps.size() && is_unicode_letter(cps[e])) ++e;
      emit(i, e);
    } else if (is_unicode_number(c)) {
      emit(i, i + 1);
    } else if (is_regex_space(c) || c == 0x0345) {
      // Spaces separate words. U+0345 (combining ypogegrammeni) is a quirk of the case-
      // insensitive pattern: it case-folds to a letter, so the "not a letter" class rejects it
      // while the letter class does not take it either, and the pattern skips it.
      ++i;
    } else {
      size_t e = i + 1;
      while (e < cps.size() && !is_regex_space(cps[e]) && !is_unicode_letter(cps[e]) &&
             !is_unicode_number(cps[e]) && cps[e] != 0x0345)
        ++e;
      emit(i, e);
    }
  }
  return words;
}

std::vector<int32_t> Tokenizer::bpe_word(std::string_view word) const {
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(std::string(word));
    if (it != cache_->words.end()) return it->second;
  }
  // Symbols: one per byte, the last one marked as the end of the word.
  std::vector<int32_t> sym(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    auto b = (unsigned char)word[i];
    sym[i] = i + 1 == word.size() ? byte_end_id_[b] : byte_id_[b];
  }
  // Repeatedly merge every occurrence (left to right) of the adjacent pair with the lowest
  // rank; stop when no adjacent pair is a known merge.
  while (sym.size() > 1) {
    int32_t best_rank = INT32_MAX, best_a = -1, best_b = -1, merged = -1;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merges_.find(pair_key(sym[i], sym[i + 1]));
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        best_a = sym[i];
        best_b = sym[i + 1];
        merged = it->second.second;
      }
    }
    if (merged < 0) break;
    std::vector<int32_t> next;
    next.reserve(sym.size());
    for (size_t i = 0; i < sym.size();) {
      if (i + 1 < sym.size() && sym[i] == best_a && sym[i + 1] == best_b) {
        next.push_back(merged);
        i += 2;
      } else {
        next.push_back(sym[i++]);
      }
    }
    sym.swap(next);
  }
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->words.size() > 100000) {  // bound the memory of long sessions
    cache_->words.clear();
    cache_->words[kBos] = {bos_};
    cache_->words[kEos] = {eos_};
  }
  cache_->words.emplace(std::string(word), sym);
  return sym;
}

std::vector<Tokenizer::Word> Tokenizer::encode_words(std::string_view text) const {
  std::vector<Word> out;
  for (auto& w : split_words(clip_clean_text(text))) {
    Word word;
    word.ids = bpe_word(w);
    word.text = std::move(w);
    out.push_back(std::move(word));
  }
  return out;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (const auto& w : split_words(clip_clean_text(text))) {
    auto wi = bpe_word(w);
    ids.insert(ids.end(), wi.begin(), wi.end());
  }
  return ids;
}

SdTokens Tokenizer::encode_for_sd(std::string_view text, int context_length, int pad_id) const {
  if (context_length < 2) fail("tokenizer: context length " + std::to_string(context_length) + " leaves no room for BOS and EOS");
  std::vector<int32_t> bpe = encode(text);
  SdTokens r;
  r.prompt_tokens = (int)bpe.size();
  const size_t room = (size_t)context_length - 2;
  r.truncated = bpe.size() > room;
  r.ids.reserve((size_t)context_length);
  r.ids.push_back(bos_);
  r.ids.insert(r.ids.end(), bpe.begin(), bpe.begin() + (ptrdiff_t)std::min(room, bpe.size()));
  r.ids.push_back(eos_);
  r.ids.resize((size_t)context_length, pad_id < 0 ? eos_ : pad_id);
  return r;
}

// ---- decoding ------------------------------------------------------------------------------

const std::string& Tokenizer::token_symbol(int32_t id) const {
  if (id < 0 || (size_t)id >= symbols_.size())
    fail("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(symbols_.size() - 1) + ")");
  return symbols_[(size_t)id];
}

int32_t Tokenizer::symbol_id(std::string_view symbol) const {
  auto it = ids_.find(std::string(symbol));
  return it == ids_.end() ? -1 : it->second;
}

namespace {
// Undo the byte stand-ins of a symbol string; bytes may form invalid UTF-8 (partial tokens).
std::string symbol_bytes(const std::string& symbol) {
  std::string bytes;
  for (char32_t c : utf8_decode(symbol, "vocabulary entry")) {
    int b = byte_map().from_char(c);
    if (b < 0) {
      utf8_append(bytes, c);  // not a byte stand-in (cannot happen for CLIP's vocabulary)
    } else {
      bytes.push_back((char)b);
    }
  }
  return bytes;
}

// Python's bytes.decode('utf-8', errors='replace'): each maximal invalid subpart -> U+FFFD.
std::string repair_utf8(std::string_view bytes) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0, n = bytes.size();
  while (i < n) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
    if (len == 1) {
      out.push_back((char)c);
      ++i;
      continue;
    }
    if (len == 0) {
      utf8_append(out, 0xfffd);
      ++i;
      continue;
    }
    // Valid continuation bytes, with the narrower second-byte ranges of E0/ED/F0/F4.
    size_t k = 1;
    for (; k < len && i + k < n; ++k) {
      unsigned char d = p[i + k];
      unsigned char lo = 0x80, hi = 0xbf;
      if (k == 1) {
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
      }
      if (d < lo || d > hi) break;
    }
    if (k == len) {
      out.append(bytes.substr(i, len));
    } else {
      utf8_append(out, 0xfffd);
    }
    i += k;
  }
  return out;
}
}  // namespace

std::string Tokenizer::token_bytes(int32_t id) const { return symbol_bytes(token_symbol(id)); }
std::string Tokenizer::token_text(int32_t id) const { return repair_utf8(token_bytes(id)); }

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += token_symbol(id);
  std::string text = repair_utf8(symbol_bytes(bytes));
  // "</w>" -> " " (after byte decoding, as simple_tokenizer does).
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, kEndOfWord) == 0) {
      out.push_back(' ');
      i += 4;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

// ---- locating the vocabulary ---------------------------------------------------------------

std::string find_vocabulary(const std::string& model_path, const std::string& explicit_path,
                            const std::string& config_vocab) {
  std::error_code ec;
  if (!explicit_path.empty()) {
    if (!fs::exists(explicit_path, ec)) fail("vocabulary given with --vocab not found: " + explicit_path);
    return explicit_path;
  }
  // The model's own config knows which vocabulary its text encoder was trained with: that beats
  // guessing from file names (a CLIP vocabulary lying beside a model with its own BPE would
  // silently give wrong ids).
  if (!config_vocab.empty()) {
    if (!fs::exists(config_vocab, ec)) fail("the model config's tokenizer.vocab does not exist: " + config_vocab);
    return config_vocab;
  }
  auto beside = [&](const fs::path& dir) -> std::string {
    if (fs::exists(dir / kClipBpeFileName, ec)) return (dir / kClipBpeFileName).string();
    if (fs::exists(dir / "tokenizer" / "vocab.json", ec) && fs::exists(dir / "tokenizer" / "merges.txt", ec))
      return (dir / "tokenizer" / "vocab.json").string();
    if (fs::exists(dir / "vocab.json", ec) && fs::exists(dir / "merges.txt", ec)) return (dir / "vocab.json").string();
    return {};
  };
  std::string looked;
  if (!model_path.empty()) {
    fs::path dir = fs::is_directory(model_path, ec) ? fs::path(model_path) : fs::path(model_path).parent_path();
    if (dir.empty()) dir = ".";
    if (auto p = beside(dir); !p.empty()) return p;
    looked = " Looked beside the model in " + dir.string() + ".";
  }
  if (const char* env = std::getenv("VKSD_VOCAB"); env && *env) {
    if (!fs::exists(env, ec)) fail(std::string("VKSD_VOCAB names a vocabulary that does not exist: ") + env);
    return env;
  }
  fail(std::string("the CLIP tokenizer vocabulary was not found.") + looked +
       " Needed: bpe_simple_vocab_16e6.txt.gz (from the OpenAI CLIP repository, clip/bpe_simple_vocab_16e6.txt.gz) "
       "or vocab.json + merges.txt (the tokenizer/ folder of any Stable Diffusion 1.x diffusers model). "
       "Put it beside the checkpoint, or pass --vocab FILE, or set VKSD_VOCAB=FILE.");
}

}  // namespace vksd
