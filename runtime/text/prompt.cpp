// A1111-style prompt emphasis and 75-token chunking (rules in prompt.h).
#include "runtime/text/prompt.h"

#include <cmath>
#include <cstdio>

#include <charconv>

#include <utf8proc.h>

#include "runtime/error.h"
#include "runtime/text/text_clean.h"

namespace vksd {

namespace {

constexpr double kRoundMultiplier = 1.1;
constexpr double kSquareMultiplier = 1.0 / 1.1;  // multiplied, not divided: same rounding as A1111

// Python re's \w: letters, numbers, underscore.
bool is_word_char(char32_t c) { return c == U'_' || is_unicode_letter(c) || is_unicode_number(c); }

// Python re's \d and float() take any decimal digit (Unicode category Nd), "(word:١.٥)" too.
bool is_decimal_digit(char32_t c) {
  if (c < 0x80) return c >= U'0' && c <= U'9';
  return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND;
}

// Unicode encodes every set of decimal digits as a contiguous, ordered 0..9 run (sets may abut,
// as the mathematical digits do), so the value is the distance from the run's start, mod 10.
char ascii_digit(char32_t c) {
  if (c < 0x80) return (char)c;
  char32_t first = c;
  while (first > 0 && is_decimal_digit(first - 1)) --first;
  return (char)('0' + (c - first) % 10);
}

// Weighted pieces as the parser builds them, before merging.
struct Piece {
  std::u32string text;
  double weight;
  bool is_break;
};

// Plain text, split at BREAK keywords (re.split(r"\s*\bBREAK\b\s*", text)): upper-case BREAK as
// a whole word; the whitespace around it goes with it.
void append_text(std::vector<Piece>& res, std::u32string_view t) {
  static const std::u32string_view kBreak = U"BREAK";
  size_t last_end = 0, pos = 0;
  while (pos + kBreak.size() <= t.size()) {
    size_t q = t.find(kBreak, pos);
    if (q == std::u32string_view::npos) break;
    const size_t e = q + kBreak.size();
    const bool boundary_before = q == 0 || !is_word_char(t[q - 1]);
    const bool boundary_after = e == t.size() || !is_word_char(t[e]);
    if (!boundary_before || !boundary_after) {
      pos = q + 1;
      continue;
    }
    size_t p = q, end = e;
    while (p > last_end && is_unicode_space(t[p - 1])) --p;
    while (end < t.size() && is_unicode_space(t[end])) ++end;
    res.push_back({std::u32string(t.substr(last_end, p - last_end)), 1.0, false});
    res.push_back({U"BREAK", 1.0, true});
    last_end = pos = end;
  }
  res.push_back({std::u32string(t.substr(last_end)), 1.0, false});
}

// `:\s*([+-]?[.\d]+)\s*\)` at t[i] (t[i] == ':'): the number's text and the match's end.
bool match_weight(std::u32string_view t, size_t i, std::u32string_view& number, size_t& end) {
  size_t j = i + 1;
  while (j < t.size() && is_unicode_space(t[j])) ++j;
  const size_t b = j;
  if (j < t.size() && (t[j] == U'+' || t[j] == U'-')) ++j;
  const size_t digits = j;
  while (j < t.size() && (is_decimal_digit(t[j]) || t[j] == U'.')) ++j;
  if (j == digits) return false;
  number = t.substr(b, j - b);
  while (j < t.size() && is_unicode_space(t[j])) ++j;
  if (j >= t.size() || t[j] != U')') return false;
  end = j + 1;
  return true;
}

// Python's float() of [+-]?[.\d]+ : digits with at most one '.' and at least one digit.
double parse_weight(std::u32string_view number, std::u32string_view context) {
  std::string s;
  for (char32_t c : number) s.push_back(c == U'.' || c == U'+' || c == U'-' ? (char)c : ascii_digit(c));
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;  // from_chars takes '-' but not '+'
  int dots = 0, digits = 0;
  for (const char* p = (b != e && *b == '-') ? b + 1 : b; p < e; ++p) (*p == '.' ? dots : digits)++;
  double v = 0;
  bool ok = dots <= 1 && digits > 0;
  if (ok) {
    auto [ptr, ec] = std::from_chars(b, e, v, std::chars_format::fixed);
    ok = ec == std::errc() && ptr == e;
  }
  if (!ok)
    fail("prompt: emphasis weight '" + utf8_encode(number) + "' in '" + utf8_encode(context) + "' is not a number (write e.g. (word:1.2))");
  return v;
}

}  // namespace

static std::string fmt_weight(double w) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", w);
  return b;
}

std::vector<PromptSegment> parse_prompt_emphasis(std::string_view prompt) {
  const std::u32string t = utf8_decode(prompt, "prompt");
  std::vector<Piece> res;
  std::vector<size_t> round, square;  // positions in res where each open bracket started

  auto multiply_range = [&](size_t start, double m) {
    for (size_t p = start; p < res.size(); ++p) res[p].weight *= m;
  };
  // A closing bracket multiplies everything since the innermost open bracket of its kind; with
  // none open it is plain text.
  auto close_bracket = [&](std::vector<size_t>& open, double m, std::u32string_view literal) {
    if (open.empty()) {
      append_text(res, literal);
    } else {
      multiply_range(open.back(), m);
      open.pop_back();
    }
  };

  size_t i = 0;
  while (i < t.size()) {
    const char32_t c = t[i];
    if (c == U'\\') {
      // \( \) \[ \] \\ give the character itself; a lone backslash gives nothing.
      const bool escapes = i + 1 < t.size() && std::u32string_view(U"()[]\\").find(t[i + 1]) != std::u32string_view::npos;
      res.push_back({escapes ? std::u32string(1, t[i + 1]) : std::u32string(), 1.0, false});
      i += escapes ? 2 : 1;
    } else if (c == U'(') {
      round.push_back(res.size());
      ++i;
    } else if (c == U'[') {
      square.push_back(res.size());
      ++i;
    } else if (c == U':') {
      std::u32string_view number;
      size_t end = 0;
      if (match_weight(t, i, number, end)) {
        if (!round.empty()) {
          const double w = parse_weight(number, std::u32string_view(t).substr(i, end - i));
          multiply_range(round.back(), w);
          round.pop_back();
        } else {
          append_text(res, std::u32string_view(t).substr(i, end - i));  // ":1.3)" with no '(' open
        }
        i = end;
      } else {
        append_text(res, U":");
        ++i;
      }
    } else if (c == U')') {
      close_bracket(round, kRoundMultiplier, U")");
      ++i;
    } else if (c == U']') {
      close_bracket(square, kSquareMultiplier, U"]");
      ++i;
    } else {
      size_t e = i + 1;
      while (e < t.size() && std::u32string_view(U"\\()[]:").find(t[e]) == std::u32string_view::npos) ++e;
      append_text(res, std::u32string_view(t).substr(i, e - i));
      i = e;
    }
  }
  // Brackets left open apply to the end, innermost-last as A1111 closes them (order does not
  // change products, but keep it to get bit-identical doubles).
  for (size_t pos : round) multiply_range(pos, kRoundMultiplier);
  for (size_t pos : square) multiply_range(pos, kSquareMultiplier);

  if (res.empty()) res.push_back({U"", 1.0, false});
  // Merge neighbours of identical weight (exact double comparison, as A1111).
  std::vector<Piece> merged;
  for (auto& p : res) {
    if (!merged.empty() && !p.is_break && !merged.back().is_break && merged.back().weight == p.weight) {
      merged.back().text += p.text;
    } else {
      merged.push_back(std::move(p));
    }
  }
  std::vector<PromptSegment> out;
  out.reserve(merged.size());
  for (auto& p : merged) {
    // An absurd weight (1e60, or ((((...)))) nested hundreds deep) scales the text embedding to
    // inf/NaN and the image to black: refuse it with the text it applies to.
    if (!p.is_break && !(std::fabs(p.weight) <= kMaxEmphasisWeight))
      fail("prompt: emphasis weight " + fmt_weight(p.weight) + " on '" + utf8_encode(p.text).substr(0, 60) +
           "' is beyond the maximum of " + std::to_string((int)kMaxEmphasisWeight) + " (usual weights are 0.5-1.5)");
    out.push_back({utf8_encode(p.text), p.is_break ? 1.0 : p.weight, p.is_break});
  }
  return out;
}

bool WeightedPrompt::has_emphasis() const {
  for (float w : weights)
    if (w != 1.0f) return true;
  return false;
}

WeightedPrompt tokenize_weighted(const Tokenizer& tok, std::string_view prompt, const ChunkOptions& opt) {
  constexpr int kLen = WeightedPrompt::kChunkTokens;
  const int32_t pad = opt.pad_id < 0 ? tok.eos_id() : opt.pad_id;
  const int32_t comma = tok.symbol_id(",</w>");

  std::vector<PromptSegment> segments =
      opt.parse_emphasis ? parse_prompt_emphasis(prompt) : std::vector<PromptSegment>{{std::string(prompt), 1.0, false}};

  WeightedPrompt out;
  std::vector<int32_t> chunk;
  std::vector<float> chunk_w;
  int last_comma = -1;

  auto next_chunk = [&] {
    out.ids.push_back(tok.bos_id());
    out.weights.push_back(1.0f);
    out.ids.insert(out.ids.end(), chunk.begin(), chunk.end());
    out.weights.insert(out.weights.end(), chunk_w.begin(), chunk_w.end());
    out.ids.push_back(tok.eos_id());
    out.weights.push_back(1.0f);
    for (size_t k = chunk.size(); k < (size_t)kLen; ++k) {
      out.ids.push_back(pad);
      out.weights.push_back(1.0f);
    }
    ++out.chunk_count;
    chunk.clear();
    chunk_w.clear();
    last_comma = -1;
  };

  for (const auto& seg : segments) {
    if (seg.is_break) {
      next_chunk();
      continue;
    }
    for (int32_t id : tok.encode(seg.text)) {
      if (id == comma) {
        last_comma = (int)chunk.size();
      } else if (opt.comma_backtrack > 0 && (int)chunk.size() == kLen && last_comma != -1 &&
                 (int)chunk.size() - last_comma <= opt.comma_backtrack) {
        // Move the words after the last comma to the next chunk.
        std::vector<int32_t> moved(chunk.begin() + last_comma + 1, chunk.end());
        std::vector<float> moved_w(chunk_w.begin() + last_comma + 1, chunk_w.end());
        chunk.resize((size_t)last_comma + 1);
        chunk_w.resize((size_t)last_comma + 1);
        next_chunk();
        chunk = std::move(moved);
        chunk_w = std::move(moved_w);
      }
      if ((int)chunk.size() == kLen) next_chunk();
      chunk.push_back(id);
      chunk_w.push_back((float)seg.weight);
      ++out.token_count;
    }
  }
  if (!chunk.empty() || out.chunk_count == 0) next_chunk();
  return out;
}

void pad_to_chunks(WeightedPrompt& p, int chunks, const Tokenizer& tok, int pad_id) {
  const int32_t pad = pad_id < 0 ? tok.eos_id() : pad_id;
  while (p.chunk_count < chunks) {
    p.ids.push_back(tok.bos_id());
    p.ids.push_back(tok.eos_id());
    p.ids.insert(p.ids.end(), WeightedPrompt::kChunkLength - 2, pad);
    p.weights.insert(p.weights.end(), WeightedPrompt::kChunkLength, 1.0f);
    ++p.chunk_count;
  }
}

}  // namespace vksd
