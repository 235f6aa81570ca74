// Prompt emphasis and long prompts, in the syntax AUTOMATIC1111's web UI made familiar.
//
// Emphasis (parse_prompt_emphasis):
//   (word)        weight x 1.1         ((word))  x 1.21      (((word))) x 1.331
//   [word]        weight / 1.1         [[word]]  / 1.21
//   (word:1.3)    weight x 1.3 (any number: "(word:0.5)", "(word: -1 )"; the ':' form is only
//                 recognised directly before a ')' that closes an open '(')
//   \( \) \[ \]   literal brackets;  \\ a literal backslash; a lone '\' vanishes
//   unbalanced    an unclosed '(' or '[' applies to everything after it up to the end; a ')' or
//                 ']' with nothing open is literal text
//   BREAK         (upper case, a whole word) ends the current 75-token chunk
// Weights multiply when nested: "((a:1.5) b)" gives a 1.65, b 1.1. Neighbouring pieces with
// equal weight are merged into one segment, and each segment is tokenized on its own (so
// "(unnecessary)(parens)" is the single word "unnecessaryparens" at 1.1), all as A1111 does.
// A '(word:1.2.3)' weight that is not a number is an Error (A1111 fails on it too).
// One deliberate difference: A1111 marks BREAK with weight -1, so a BREAK inside brackets gets
// multiplied, stops being a BREAK and becomes the token "break" with a negative weight; here a
// BREAK is a BREAK wherever it appears.
//
// Chunks (tokenize_weighted): the prompt's tokens are cut into chunks of 75; each chunk becomes
// a 77-token CLIP input [BOS] + tokens + [EOS] + [pad]*, and the text encoder runs once per chunk.
// The chunks' outputs are concatenated along the sequence axis (a 2-chunk prompt gives a
// 154 x 768 context), which cross-attention accepts at any length. Like A1111, when a chunk fills
// up and a comma came within the last `comma_backtrack` tokens, the words after that comma move
// to the next chunk so that a phrase is not cut in half.
//
// How the pipeline uses the weights (A1111's "Original" emphasis): per chunk, with z the text
// encoder output [77, width]:
//     original_mean = mean(z)                     (over all 77 x width numbers)
//     z[i, :] *= weight[i]                        (weight 1.0 at BOS / EOS / padding)
//     z *= original_mean / mean(z)                (restore the mean of the whole embedding)
// For a prompt without emphasis every weight is 1.0 and this is the identity.
// Classifier-free guidance needs the conditional and unconditional contexts to have the same
// length: pad the shorter with empty-prompt chunks (pad_to_chunks), as A1111's "pad prompt/
// negative prompt to be same length" option does.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/text/tokenizer.h"

namespace vksd {

struct PromptSegment {
  std::string text;
  double weight = 1.0;     // computed in double in A1111's order of multiplication
  bool is_break = false;   // a BREAK keyword (text is "BREAK", weight unused)
  bool operator==(const PromptSegment&) const = default;
};

// The emphasis syntax above -> segments. An empty prompt gives one segment {"", 1.0}.
// Largest |weight| a segment may end up with (after nesting); beyond it the parse fails.
constexpr double kMaxEmphasisWeight = 100;
std::vector<PromptSegment> parse_prompt_emphasis(std::string_view prompt);

struct ChunkOptions {
  int pad_id = -1;              // < 0: pad with EOS (SD 1.x); OpenCLIP models pad with 0
  int comma_backtrack = 20;     // A1111's default; 0 disables
  bool parse_emphasis = true;   // false: the whole prompt is plain text at weight 1.0
};

struct WeightedPrompt {
  static constexpr int kChunkTokens = 75;  // prompt tokens per chunk
  static constexpr int kChunkLength = 77;  // with BOS and EOS
  int chunk_count = 0;
  std::vector<int32_t> ids;     // chunk_count * 77
  std::vector<float> weights;   // chunk_count * 77; 1.0 at BOS, EOS and padding
  int token_count = 0;          // prompt tokens (no BOS/EOS/padding)
  bool has_emphasis() const;    // any weight != 1
  // Chunk c's 77 ids / weights.
  const int32_t* chunk_ids(int c) const { return ids.data() + (size_t)c * kChunkLength; }
  const float* chunk_weights(int c) const { return weights.data() + (size_t)c * kChunkLength; }
};

WeightedPrompt tokenize_weighted(const Tokenizer& tok, std::string_view prompt, const ChunkOptions& opt = {});

// Appends empty-prompt chunks ([BOS][EOS][pad]..., weight 1) until p has `chunks` chunks.
void pad_to_chunks(WeightedPrompt& p, int chunks, const Tokenizer& tok, int pad_id = -1);

}  // namespace vksd
