// Prompt emphasis against A1111's published parse_prompt_attention examples and rules, and the
// 75-token chunking of long prompts (BOS + 75 + EOS per chunk, BREAK, comma backtracking).
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "runtime/error.h"
#include "runtime/text/prompt.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

using Segs = std::vector<PromptSegment>;
PromptSegment seg(const char* text, double w) { return {text, w, false}; }
PromptSegment brk() { return {"BREAK", 1.0, true}; }

std::string describe(const Segs& s) {
  std::string out;
  char buf[64];
  for (const auto& x : s) {
    if (x.is_break) {
      out += "[BREAK] ";
      continue;
    }
    std::snprintf(buf, sizeof buf, "%.17g", x.weight);
    out += "['" + x.text + "', " + buf + "] ";
  }
  return out;
}

void check_parse(const char* prompt, const Segs& expected) {
  Segs got = parse_prompt_emphasis(prompt);
  CAPTURE(prompt);
  INFO("got      ", describe(got));
  INFO("expected ", describe(expected));
  CHECK(got == expected);  // weights compared exactly, as doubles
}

std::string clip_vocab_path() { return test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz"; }
bool have_vocab() { return std::filesystem::exists(clip_vocab_path()); }
const Tokenizer& clip() {
  static const Tokenizer t = Tokenizer::load(clip_vocab_path());
  return t;
}

std::string repeat(const std::string& s, int n) {
  std::string r;
  for (int i = 0; i < n; ++i) r += s;
  return r;
}

}  // namespace

TEST_CASE("prompt: A1111's documented parse_prompt_attention examples") {
  // The examples of A1111's docstring, with its printed weights.
  check_parse("normal text", {seg("normal text", 1.0)});
  check_parse("an (important) word", {seg("an ", 1.0), seg("important", 1.1), seg(" word", 1.0)});
  check_parse("(unbalanced", {seg("unbalanced", 1.1)});
  check_parse("\\(literal\\]", {seg("(literal]", 1.0)});
  check_parse("(unnecessary)(parens)", {seg("unnecessaryparens", 1.1)});
  check_parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
              {seg("a ", 1.0), seg("house", 1.5730000000000004), seg(" ", 1.1), seg("on", 1.0), seg(" a ", 1.1),
               seg("hill", 0.55), seg(", sun, ", 1.1), seg("sky", 1.4641000000000006), seg(".", 1.1)});
}

TEST_CASE("prompt: emphasis rules") {
  check_parse("(word)", {seg("word", 1.1)});
  check_parse("((word))", {seg("word", 1.2100000000000002)});     // 1.1 * 1.1 in doubles
  check_parse("(((word)))", {seg("word", 1.3310000000000004)});
  check_parse("[word]", {seg("word", 0.9090909090909091)});       // x (1 / 1.1)
  check_parse("[[word]]", {seg("word", (1.0 / 1.1) * (1.0 / 1.1))});
  check_parse("(word:1.3)", {seg("word", 1.3)});
  check_parse("(word: 0.5 )", {seg("word", 0.5)});
  check_parse("(word:-1)", {seg("word", -1.0)});
  check_parse("(word:+.5)", {seg("word", 0.5)});
  check_parse("(word:2.)", {seg("word", 2.0)});
  check_parse("((a:1.5) b)", {seg("a", 1.5 * 1.1), seg(" b", 1.1)});
  check_parse("[(a) b]", {seg("a", 1.1 * (1.0 / 1.1)), seg(" b", 1.0 / 1.1)});
  check_parse("(a:\xd9\xa1.\xd9\xa5)", {seg("a", 1.5)});          // Arabic-Indic digits, as Python's \d
  // Unbalanced and stray brackets.
  check_parse("a ) b ]", {seg("a ) b ]", 1.0)});
  check_parse("word:1.3)", {seg("word:1.3)", 1.0)});             // a weight with no '(' open is text
  check_parse("(a [b", {seg("a ", 1.1), seg("b", 1.1 * (1.0 / 1.1))});
  check_parse("(a:1.2]", {seg("a:1.2]", 1.1)});                  // a weight needs ')'; stray ']' is text
  // Escapes.
  check_parse("\\(a\\) \\[b\\]", {seg("(a) [b]", 1.0)});
  check_parse("a\\\\b", {seg("a\\b", 1.0)});
  check_parse("a\\b", {seg("ab", 1.0)});                          // a lone backslash vanishes
  check_parse("(\\(x\\))", {seg("(x)", 1.1)});
  check_parse("", {seg("", 1.0)});
  check_parse("()", {seg("", 1.0)});

  CHECK_THROWS_WITH_AS(parse_prompt_emphasis("(a:1.2.3)"), doctest::Contains("1.2.3"), Error);
  CHECK_THROWS_WITH_AS(parse_prompt_emphasis("(a:.)"), doctest::Contains("not a number"), Error);
  CHECK_THROWS_AS(parse_prompt_emphasis("(a\xff)"), Error);
}

TEST_CASE("prompt: BREAK") {
  check_parse("a BREAK b", {seg("a", 1.0), brk(), seg("b", 1.0)});
  check_parse("a\n BREAK\tb", {seg("a", 1.0), brk(), seg("b", 1.0)});
  check_parse("BREAK", {seg("", 1.0), brk(), seg("", 1.0)});
  check_parse("a BREAK, b", {seg("a", 1.0), brk(), seg(", b", 1.0)});
  check_parse("(a) BREAK b", {seg("a", 1.1), seg("", 1.0), brk(), seg("b", 1.0)});
  // Only the upper-case whole word.
  check_parse("a break b", {seg("a break b", 1.0)});
  check_parse("BREAKfast aBREAK BREAK_", {seg("BREAKfast aBREAK BREAK_", 1.0)});
  // Deliberate difference from A1111 (see prompt.h): inside brackets BREAK is still a BREAK.
  check_parse("(a BREAK b)", {seg("a", 1.1), brk(), seg("b", 1.1)});
}

TEST_CASE("prompt: a 100-token prompt becomes two 77-token chunks") {
  REQUIRE_MESSAGE(have_vocab(), "reference data missing (../shared/clip beside the checkout)");
  const int32_t cat = clip().symbol_id("cat</w>");
  REQUIRE(cat >= 0);
  const std::string prompt = repeat("cat ", 100);
  REQUIRE(clip().encode(prompt).size() == 100);

  WeightedPrompt p = tokenize_weighted(clip(), prompt);
  CHECK(p.chunk_count == 2);
  CHECK(p.token_count == 100);
  REQUIRE(p.ids.size() == 2 * 77);
  REQUIRE(p.weights.size() == 2 * 77);
  CHECK(!p.has_emphasis());
  // Chunk 0: BOS, 75 tokens, EOS.
  CHECK(p.ids[0] == 49406);
  for (int k = 1; k <= 75; ++k) CHECK(p.ids[(size_t)k] == cat);
  CHECK(p.ids[76] == 49407);
  // Chunk 1: BOS, the other 25, EOS, then EOS padding.
  const int32_t* c1 = p.chunk_ids(1);
  CHECK(c1[0] == 49406);
  for (int k = 1; k <= 25; ++k) CHECK(c1[k] == cat);
  for (int k = 26; k < 77; ++k) CHECK(c1[k] == 49407);
  for (float w : p.weights) CHECK(w == 1.0f);

  // The boundary: 75 tokens fill one chunk exactly; 76 need two.
  CHECK(tokenize_weighted(clip(), repeat("cat ", 75)).chunk_count == 1);
  CHECK(tokenize_weighted(clip(), repeat("cat ", 76)).chunk_count == 2);

  // Emphasis across the chunk boundary: tokens 71..80 at 1.3.
  WeightedPrompt e = tokenize_weighted(clip(), repeat("cat ", 70) + "(" + repeat("cat ", 10) + ":1.3)" + repeat("cat ", 20));
  CHECK(e.chunk_count == 2);
  CHECK(e.has_emphasis());
  for (int t = 0; t < 100; ++t) {
    const int chunk = t / 75, pos = 1 + t % 75;
    CAPTURE(t);
    CHECK(e.chunk_ids(chunk)[pos] == cat);
    CHECK(e.chunk_weights(chunk)[pos] == (t >= 70 && t < 80 ? 1.3f : 1.0f));
  }
  CHECK(e.chunk_weights(0)[0] == 1.0f);
  CHECK(e.chunk_weights(0)[76] == 1.0f);
}

TEST_CASE("prompt: chunk details (weights per token, segments, BREAK, padding, commas)") {
  REQUIRE_MESSAGE(have_vocab(), "reference data missing (../shared/clip beside the checkout)");
  const Tokenizer& t = clip();
  const int32_t cat = t.symbol_id("cat</w>"), dog = t.symbol_id("dog</w>"), comma = t.symbol_id(",</w>");

  SUBCASE("per-token weights; BOS/EOS/padding at 1") {
    WeightedPrompt p = tokenize_weighted(t, "(cat:1.5) dog [bird]");
    std::vector<int32_t> bird = t.encode("bird");
    REQUIRE(bird.size() == 1);
    CHECK(p.chunk_count == 1);
    CHECK(p.token_count == 3);
    CHECK(std::vector<int32_t>(p.ids.begin(), p.ids.begin() + 5) == std::vector<int32_t>{49406, cat, dog, bird[0], 49407});
    CHECK(p.weights[0] == 1.0f);
    CHECK(p.weights[1] == 1.5f);
    CHECK(p.weights[2] == 1.0f);
    CHECK(p.weights[3] == (float)(1.0 / 1.1));
    for (int k = 4; k < 77; ++k) CHECK(p.weights[(size_t)k] == 1.0f);
    for (int k = 5; k < 77; ++k) CHECK(p.ids[(size_t)k] == 49407);
  }
  SUBCASE("each segment is tokenized on its own") {
    WeightedPrompt p = tokenize_weighted(t, "(unnecessary)(parens)");
    std::vector<int32_t> joined = t.encode("unnecessaryparens");
    CHECK(p.token_count == (int)joined.size());
    CHECK(std::vector<int32_t>(p.ids.begin() + 1, p.ids.begin() + 1 + (long)joined.size()) == joined);
    for (size_t k = 0; k < joined.size(); ++k) CHECK(p.weights[1 + k] == 1.1f);
  }
  SUBCASE("emphasis parsing off: brackets are text") {
    ChunkOptions o;
    o.parse_emphasis = false;
    WeightedPrompt p = tokenize_weighted(t, "(cat)", o);
    std::vector<int32_t> plain = t.encode("(cat)");
    CHECK(p.token_count == (int)plain.size());
    CHECK(std::vector<int32_t>(p.ids.begin() + 1, p.ids.begin() + 1 + (long)plain.size()) == plain);
    CHECK(!p.has_emphasis());
  }
  SUBCASE("BREAK starts a new chunk, even an empty one") {
    WeightedPrompt p = tokenize_weighted(t, "cat BREAK dog");
    CHECK(p.chunk_count == 2);
    CHECK(p.chunk_ids(0)[1] == cat);
    CHECK(p.chunk_ids(0)[2] == 49407);
    CHECK(p.chunk_ids(1)[1] == dog);
    WeightedPrompt lead = tokenize_weighted(t, "BREAK dog");
    CHECK(lead.chunk_count == 2);
    CHECK(lead.chunk_ids(0)[1] == 49407);  // an empty first chunk
    CHECK(tokenize_weighted(t, "cat BREAK").chunk_count == 1);
  }
  SUBCASE("empty prompt: one chunk of BOS, EOS, padding") {
    WeightedPrompt p = tokenize_weighted(t, "");
    CHECK(p.chunk_count == 1);
    CHECK(p.token_count == 0);
    CHECK(p.ids[0] == 49406);
    for (int k = 1; k < 77; ++k) CHECK(p.ids[(size_t)k] == 49407);
  }
  SUBCASE("padding id 0: EOS then zeros") {
    ChunkOptions o;
    o.pad_id = 0;
    WeightedPrompt p = tokenize_weighted(t, "cat dog", o);
    CHECK(p.ids[3] == 49407);
    for (int k = 4; k < 77; ++k) CHECK(p.ids[(size_t)k] == 0);
  }
  SUBCASE("comma backtracking moves the words after a late comma to the next chunk") {
    // 70 cats, a comma, 29 dogs = 100 tokens. The chunk fills at the 4th dog; the comma is 5
    // tokens back (<= 20), so A1111 ends chunk 0 after the comma and moves those 4 dogs on.
    const std::string prompt = repeat("cat ", 70) + ", " + repeat("dog ", 29);
    REQUIRE(t.encode(prompt).size() == 100);
    WeightedPrompt p = tokenize_weighted(t, prompt);
    CHECK(p.chunk_count == 2);
    CHECK(p.token_count == 100);
    const int32_t* c0 = p.chunk_ids(0);
    for (int k = 1; k <= 70; ++k) CHECK(c0[k] == cat);
    CHECK(c0[71] == comma);
    for (int k = 72; k < 77; ++k) CHECK(c0[k] == 49407);
    const int32_t* c1 = p.chunk_ids(1);
    for (int k = 1; k <= 29; ++k) CHECK(c1[k] == dog);
    CHECK(c1[30] == 49407);

    ChunkOptions off;
    off.comma_backtrack = 0;
    WeightedPrompt q = tokenize_weighted(t, prompt, off);
    CHECK(q.chunk_count == 2);
    for (int k = 72; k <= 75; ++k) CHECK(q.chunk_ids(0)[k] == dog);
    for (int k = 1; k <= 25; ++k) CHECK(q.chunk_ids(1)[k] == dog);
    CHECK(q.chunk_ids(1)[26] == 49407);

    // A comma further back than 20 tokens does not move anything.
    WeightedPrompt far = tokenize_weighted(t, repeat("cat ", 50) + ", " + repeat("dog ", 49));
    for (int k = 52; k <= 75; ++k) CHECK(far.chunk_ids(0)[k] == dog);
  }
  SUBCASE("pad_to_chunks appends empty-prompt chunks") {
    WeightedPrompt p = tokenize_weighted(t, "cat");
    pad_to_chunks(p, 3, t);
    CHECK(p.chunk_count == 3);
    REQUIRE(p.ids.size() == 3 * 77);
    CHECK(p.weights.size() == 3 * 77);
    for (int c = 1; c < 3; ++c) {
      CHECK(p.chunk_ids(c)[0] == 49406);
      for (int k = 1; k < 77; ++k) CHECK(p.chunk_ids(c)[k] == 49407);
    }
    pad_to_chunks(p, 2, t);  // never shrinks
    CHECK(p.chunk_count == 3);
  }
}
