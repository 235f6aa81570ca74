// CLIP's byte-level BPE tokenizer, matching OpenAI's simple_tokenizer id for id (SD 1.x's text
// encoder was trained on its output).
//
//   text --clean--> "a cozy cabin, 4k!"            (text_clean.h: unescape, whitespace, lower)
//        --split--> ["a","cozy","cabin",",","4","k","!"]    (the pre-tokenizer pattern below)
//        --bytes--> each word's UTF-8 bytes as printable stand-in characters
//        --BPE----> merge adjacent symbols, lowest merge rank first, until none applies;
//                   the last symbol of a word carries "</w>" (end of word)
//        --vocab--> ids
//
// Pre-tokenizer, simple_tokenizer's case-insensitive pattern, implemented by hand over code
// points with utf8proc's general categories:
//   <|startoftext|> | <|endoftext|> | 's | 't | 're | 've | 'm | 'll | 'd
//   | [\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+
// (a number is split into single digits; punctuation runs stay together.)
//
// Vocabulary: 256 byte symbols, the same 256 with "</w>", one symbol per merge (the merge's
// two halves joined), then <|startoftext|> (BOS) and <|endoftext|> (EOS): 49408 ids for CLIP,
// BOS 49406, EOS 49407. It is read from OpenAI's bpe_simple_vocab_16e6.txt.gz (the merges;
// the ids follow from them) or from a Hugging Face tokenizer folder (vocab.json + merges.txt).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace vksd {

// SD 1.x's fixed-length text input: [BOS] + ids + [EOS], padded.
struct SdTokens {
  std::vector<int32_t> ids;  // exactly context_length entries
  int prompt_tokens = 0;     // BPE tokens of the prompt (before truncation)
  bool truncated = false;    // the prompt had more than context_length - 2 tokens
  // "prompt is N tokens; the model sees only 75 — the rest is ignored" (empty if not truncated).
  std::string truncation_warning() const;
};

class Tokenizer {
 public:
  // path: bpe_simple_vocab_16e6.txt(.gz), a vocab.json (merges.txt beside it), or a folder
  // holding either. Errors name the file and what is wrong with it.
  static Tokenizer load(const std::string& path);
  // From the text of the merges file (first line is a header; the first max_merges merges are
  // used; OpenAI's CLIP uses 49152 - 256 - 2 = 48894).
  static Tokenizer from_bpe_merges(std::string_view merges_file_text, const std::string& source,
                                   size_t max_merges = 48894);
  // From a Hugging Face vocab.json (token -> id) and merges.txt ("#version" header, "a b" lines).
  static Tokenizer from_vocab_and_merges(std::string_view vocab_json, std::string_view merges_txt,
                                         const std::string& source);

  // BPE ids of a text, without BOS/EOS, untruncated.
  std::vector<int32_t> encode(std::string_view text) const;
  // The same, per word: the pre-tokenized words (after cleaning) and each word's ids.
  struct Word {
    std::string text;
    std::vector<int32_t> ids;
  };
  std::vector<Word> encode_words(std::string_view text) const;

  // SD 1.x input: [BOS] + ids[:context_length-2] + [EOS] + [pad]*; pad_id < 0 means EOS
  // (SD 1.x pads with EOS 49407; OpenCLIP-based models pad with 0).
  SdTokens encode_for_sd(std::string_view text, int context_length = 77, int pad_id = -1) const;

  // Text of ids: bytes joined, "</w>" becomes a space (as simple_tokenizer.decode; invalid
  // UTF-8 from partial tokens becomes U+FFFD).
  std::string decode(std::span<const int32_t> ids) const;
  // The vocabulary entry of one id with its byte stand-ins undone ("cat</w>", "<|endoftext|>"):
  // raw bytes (a token may hold part of a multi-byte character), and as valid UTF-8 (U+FFFD).
  std::string token_bytes(int32_t id) const;
  std::string token_text(int32_t id) const;
  // Raw vocabulary entry (byte stand-in characters, as in vocab.json).
  const std::string& token_symbol(int32_t id) const;
  // Id of a raw vocabulary entry, -1 if absent.
  int32_t symbol_id(std::string_view symbol) const;

  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  size_t vocab_size() const { return symbols_.size(); }
  size_t merge_count() const { return merge_count_; }
  const std::string& source() const { return source_; }

  // The pre-tokenizer alone, on already-cleaned text (exposed for tests and `vksd tokenize`).
  static std::vector<std::string> split_words(std::string_view cleaned_text);

  Tokenizer(Tokenizer&&) = default;
  Tokenizer& operator=(Tokenizer&&) = default;

 private:
  Tokenizer() = default;
  void add_merge(int32_t a, int32_t b, int32_t merged);
  void finish(const std::string& where);
  std::vector<int32_t> bpe_word(std::string_view word) const;

  std::string source_;
  std::vector<std::string> symbols_;                      // id -> byte stand-in string
  std::unordered_map<std::string, int32_t> ids_;          // byte stand-in string -> id
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, merged id)
  size_t merge_count_ = 0;
  int32_t byte_id_[256] = {};      // id of each byte's symbol
  int32_t byte_end_id_[256] = {};  // id of each byte's symbol + "</w>"
  int32_t bos_ = -1, eos_ = -1;

  // Words seen before (prompts repeat): guarded so that one Tokenizer can serve many threads.
  struct Cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> words;
  };
  std::unique_ptr<Cache> cache_ = std::make_unique<Cache>();
};

// The file simple_tokenizer's BPE merges come in, and the Hugging Face pair.
inline constexpr const char* kClipBpeFileName = "bpe_simple_vocab_16e6.txt.gz";

// Where the vocabulary for a model is. Single-file checkpoints carry none. Order:
//   1. explicit_path (--vocab), if given (must exist);
//   2. config_vocab: the vocabulary the model config names (ModelConfig::tokenizer_vocab, from
//      "tokenizer": {"vocab": FILE}), if any (must exist);
//   3. beside the model: for a file, its folder; for a folder (diffusers layout), the folder:
//      bpe_simple_vocab_16e6.txt.gz, tokenizer/vocab.json + merges.txt, vocab.json + merges.txt;
//   4. the VKSD_VOCAB environment variable.
// Returns a path Tokenizer::load accepts; otherwise throws an Error that names the files needed
// and where people get them.
std::string find_vocabulary(const std::string& model_path, const std::string& explicit_path,
                            const std::string& config_vocab = "");

}  // namespace vksd
