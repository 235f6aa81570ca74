// The CLIP tokenizer against OpenAI's tokenizer output (tokenizer_cases.json, tiny/tokens.npy),
// both vocabulary formats, the text-cleaning rules (Python's html.unescape / str.isspace /
// str.lower, as simple_tokenizer uses them), the pre-tokenizer pattern and the error paths.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/text/text_clean.h"
#include "runtime/text/tokenizer.h"
#include "tests/test_util.h"

using namespace vksd;
namespace fs = std::filesystem;

namespace {

std::string clip_vocab_path() { return test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz"; }
bool have_vocab() { return fs::exists(clip_vocab_path()); }

const Tokenizer& clip() {
  static const Tokenizer t = Tokenizer::load(clip_vocab_path());
  return t;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<int32_t> ints(const Json& a) {
  std::vector<int32_t> v;
  for (const auto& x : a.as_array()) v.push_back((int32_t)x.as_int());
  return v;
}

// A fresh empty folder under the system temp dir, removed at scope end.
struct TempDir {
  fs::path path;
  explicit TempDir(const char* name) {
    path = fs::temp_directory_path() / (std::string("vksd_test_") + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Sets (or unsets) VKSD_VOCAB for a scope and restores it.
struct EnvVocab {
  std::optional<std::string> saved;
  explicit EnvVocab(const char* value) {
    if (const char* v = std::getenv("VKSD_VOCAB")) saved = v;
    if (value) ::setenv("VKSD_VOCAB", value, 1);
    else ::unsetenv("VKSD_VOCAB");
  }
  ~EnvVocab() {
    if (saved) ::setenv("VKSD_VOCAB", saved->c_str(), 1);
    else ::unsetenv("VKSD_VOCAB");
  }
};

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

// The lines of a gzip file, read with zlib directly (not through the tokenizer's loader).
std::vector<std::string> gunzip_lines(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  std::string data;
  char buf[1 << 16];
  for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) data.append(buf, (size_t)n);
  gzclose(f);
  std::vector<std::string> lines;
  size_t b = 0;
  for (size_t e; (e = data.find('\n', b)) != std::string::npos; b = e + 1) lines.push_back(data.substr(b, e - b));
  if (b < data.size()) lines.push_back(data.substr(b));
  return lines;
}

// Hugging Face's tokenizer/ folder: vocab.json (token -> id; written last id first, since JSON
// order must not matter) and merges.txt ('#version' header, then the merges in rank order).
void write_hf_files(const fs::path& dir, const Tokenizer& t, const std::vector<std::string>& gz_lines) {
  std::string vocab = "{";
  for (size_t k = 0; k < t.vocab_size(); ++k) {
    const size_t id = t.vocab_size() - 1 - k;
    vocab += (k ? ",\n\"" : "\"") + json_escape(t.token_symbol((int32_t)id)) + "\": " + std::to_string(id);
  }
  vocab += "}\n";
  write_file(dir / "vocab.json", vocab);
  std::string merges = "#version: 0.2\n";
  for (size_t i = 1; i <= 48894; ++i) merges += gz_lines[i] + "\n";
  write_file(dir / "merges.txt", merges);
}

}  // namespace

TEST_CASE("tokenizer: CLIP vocabulary has 49408 tokens, BOS 49406, EOS 49407") {
  REQUIRE_MESSAGE(!(!have_vocab()), "reference data missing (../shared beside the checkout)");
  const Tokenizer& t = clip();
  CHECK(t.vocab_size() == 49408);
  CHECK(t.merge_count() == 49152 - 256 - 2);
  CHECK(t.bos_id() == 49406);
  CHECK(t.eos_id() == 49407);
  CHECK(t.token_symbol(49406) == "<|startoftext|>");
  CHECK(t.token_symbol(49407) == "<|endoftext|>");
  // Byte symbols: printable bytes first ('!' is id 0), then the 68 others as U+0100 + n.
  CHECK(t.token_symbol(0) == "!");
  CHECK(t.token_symbol(256) == "!</w>");
  CHECK(t.token_symbol(188) == "\xc4\x80");  // U+0100 stands for byte 0x00
  CHECK(t.token_text(188) == std::string(1, '\0'));
  CHECK(t.symbol_id("\xc4\xa0") == 188 + 32);  // byte 0x20 (space) is the 33rd non-printable
  CHECK(t.symbol_id(",</w>") == 267);
  CHECK(t.symbol_id("no such token") == -1);
}

TEST_CASE("tokenizer: every tokenizer_cases.json prompt gives OpenAI's ids exactly") {
  REQUIRE_MESSAGE(!(!have_vocab() || !fs::exists(test::shared_dir() + "/vectors/tokenizer_cases.json")), "reference data missing (../shared beside the checkout)");
  Json doc = Json::parse(read_all(test::shared_dir() + "/vectors/tokenizer_cases.json"));
  const auto& cases = doc.find("cases")->as_array();
  REQUIRE(cases.size() >= 20);
  int truncated = 0;
  for (const auto& c : cases) {
    const std::string& prompt = c.find("prompt")->as_string();
    CAPTURE(prompt);
    CHECK(clip().encode(prompt) == ints(*c.find("bpe_ids")));
    SdTokens sd = clip().encode_for_sd(prompt);
    CHECK(sd.ids == ints(*c.find("ids_77_sd1")));
    CHECK(sd.prompt_tokens == (int)c.find("bpe_ids")->as_array().size());
    CHECK(sd.truncated == (sd.prompt_tokens > 75));
    truncated += sd.truncated;
  }
  CHECK(truncated >= 1);  // the set includes a prompt longer than 75 tokens
}

TEST_CASE("tokenizer: tiny/tokens.npy rows are the SD inputs of the reference prompts") {
  REQUIRE_MESSAGE(!(!have_vocab() || !test::shared_available()), "reference data missing (../shared beside the checkout)");
  Json index = Json::parse(read_all(test::vectors_dir() + "/index.json"));
  const auto& prompts = index.find("meta")->find("prompts")->as_array();
  test::Npy tokens = test::load_npy(test::vectors_dir() + "/tokens.npy");
  REQUIRE(tokens.shape == std::vector<int64_t>{(int64_t)prompts.size(), 77});
  for (size_t r = 0; r < prompts.size(); ++r) {
    CAPTURE(prompts[r].as_string());
    SdTokens sd = clip().encode_for_sd(prompts[r].as_string());
    for (int k = 0; k < 77; ++k) CHECK(sd.ids[(size_t)k] == (int32_t)tokens.data[r * 77 + (size_t)k]);
  }
}

TEST_CASE("tokenizer: a Hugging Face vocab.json + merges.txt gives the same ids") {
  REQUIRE_MESSAGE(!(!have_vocab() || !fs::exists(test::shared_dir() + "/vectors/tokenizer_cases.json")), "reference data missing (../shared beside the checkout)");
  TempDir dir("hf_tokenizer");
  fs::create_directories(dir.path / "tokenizer");
  write_hf_files(dir.path / "tokenizer", clip(), gunzip_lines(clip_vocab_path()));

  // Found as a diffusers model folder would hold it, and loadable from the folder or the file.
  CHECK(find_vocabulary(dir.path.string(), "") == (dir.path / "tokenizer" / "vocab.json").string());
  const Tokenizer hf = Tokenizer::load((dir.path / "tokenizer").string());
  CHECK(hf.vocab_size() == 49408);
  CHECK(hf.merge_count() == 48894);
  CHECK(hf.bos_id() == 49406);
  CHECK(hf.eos_id() == 49407);

  Json doc = Json::parse(read_all(test::shared_dir() + "/vectors/tokenizer_cases.json"));
  for (const auto& c : doc.find("cases")->as_array()) {
    const std::string& prompt = c.find("prompt")->as_string();
    CAPTURE(prompt);
    CHECK(hf.encode(prompt) == ints(*c.find("bpe_ids")));
    CHECK(hf.encode_for_sd(prompt).ids == ints(*c.find("ids_77_sd1")));
  }
}

TEST_CASE("tokenizer: the vocabulary is found beside the model, by --vocab, by VKSD_VOCAB, or named in the error") {
  TempDir dir("find_vocab");
  const fs::path model = dir.path / "model.safetensors";
  write_file(model, "");
  const std::string vocab = have_vocab() ? clip_vocab_path() : (dir.path / "elsewhere.txt").string();
  if (!have_vocab()) write_file(vocab, "");

  SUBCASE("missing everywhere: the error names the files and where to get them") {
    EnvVocab env(nullptr);
    try {
      find_vocabulary(model.string(), "");
      FAIL("expected an error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.find("bpe_simple_vocab_16e6.txt.gz") != std::string::npos);
      CHECK(msg.find("vocab.json") != std::string::npos);
      CHECK(msg.find("merges.txt") != std::string::npos);
      CHECK(msg.find("CLIP repository") != std::string::npos);
      CHECK(msg.find("tokenizer/ folder") != std::string::npos);
      CHECK(msg.find("--vocab") != std::string::npos);
      CHECK(msg.find("VKSD_VOCAB") != std::string::npos);
      CHECK(msg.find(dir.path.string()) != std::string::npos);  // where it looked
    }
  }
  SUBCASE("--vocab wins; a --vocab that does not exist is an error naming it") {
    EnvVocab env(nullptr);
    CHECK(find_vocabulary(model.string(), vocab) == vocab);
    CHECK_THROWS_WITH_AS(find_vocabulary(model.string(), "/nonexistent/v.txt.gz"),
                         doctest::Contains("/nonexistent/v.txt.gz"), Error);
  }
  SUBCASE("VKSD_VOCAB when nothing is beside the model") {
    EnvVocab env(vocab.c_str());
    CHECK(find_vocabulary(model.string(), "") == vocab);
  }
  SUBCASE("beside the checkpoint file comes before VKSD_VOCAB") {
    write_file(dir.path / kClipBpeFileName, "");
    EnvVocab env(vocab.c_str());
    CHECK(find_vocabulary(model.string(), "") == (dir.path / kClipBpeFileName).string());
  }
  SUBCASE("a tokenizer/ folder needs both vocab.json and merges.txt") {
    EnvVocab env(nullptr);
    fs::create_directories(dir.path / "tokenizer");
    write_file(dir.path / "tokenizer" / "vocab.json", "{}");
    CHECK_THROWS_AS(find_vocabulary(model.string(), ""), Error);
    write_file(dir.path / "tokenizer" / "merges.txt", "#version: 0.2\n");
    CHECK(find_vocabulary(model.string(), "") == (dir.path / "tokenizer" / "vocab.json").string());
  }
}

TEST_CASE("tokenizer: the model config's tokenizer.vocab comes after --vocab, before files beside the model and VKSD_VOCAB") {
  TempDir dir("config_vocab");
  const fs::path model = dir.path / "model.safetensors";
  write_file(model, "");
  fs::create_directories(dir.path / "own");
  const std::string own = (dir.path / "own" / "bpe_vocab.txt.gz").string();  // what the config names
  const std::string flag = (dir.path / "flag.txt.gz").string();
  const std::string env = (dir.path / "env.txt.gz").string();
  for (const auto& f : {own, flag, env}) write_file(f, "");
  write_file(dir.path / kClipBpeFileName, "");  // a CLIP vocabulary beside the model: must lose to the config

  EnvVocab e(env.c_str());
  CHECK(find_vocabulary(model.string(), flag, own) == flag);
  CHECK(find_vocabulary(model.string(), "", own) == own);
  CHECK(find_vocabulary(model.string(), "", "") == (dir.path / kClipBpeFileName).string());
  fs::remove(dir.path / kClipBpeFileName);
  CHECK(find_vocabulary(model.string(), "", own) == own);
  CHECK(find_vocabulary(model.string(), "", "") == env);
  // A named vocabulary that vanished is an error naming it, not a silent fall-back to another one.
  fs::remove(own);
  const std::string want = "tokenizer.vocab does not exist: " + own;
  CHECK_THROWS_WITH_AS(find_vocabulary(model.string(), "", own), doctest::Contains(want.c_str()), Error);
}

TEST_CASE("tokenizer: decode(encode(x)) gives the cleaned words, each followed by a space") {
  REQUIRE_MESSAGE(!(!have_vocab()), "reference data missing (../shared beside the checkout)");
  // simple_tokenizer.decode joins the tokens' bytes and turns each end-of-word mark into ' ',
  // so text comes back as its pre-tokenized words separated (and ended) by spaces.
  const char* texts[] = {"a photograph of an astronaut riding a horse",
                         "A cozy cabin, 4k!  oil\tpainting",
                         "it's a dog's life &amp; more",
                         "caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x90\xb6\xf0\x9f\x90\xb1 supercalifragilisticexpialidocious",
                         ""};
  for (const char* x : texts) {
    CAPTURE(x);
    std::string expected;
    for (const auto& w : Tokenizer::split_words(clip_clean_text(x))) expected += w + " ";
    const std::vector<int32_t> ids = clip().encode(x);
    const std::string decoded = clip().decode(ids);
    CHECK(decoded == expected);
    CHECK(clip().encode(decoded) == ids);  // and the decoded text encodes to the same ids
  }
  // A token holding part of a multi-byte character decodes to U+FFFD, as errors="replace".
  const std::vector<int32_t> gothic = clip().encode("\xf0\x90\x8c\xb0");  // U+10330: rare, split into bytes
  REQUIRE(gothic.size() >= 2);
  CHECK(clip().decode(std::span<const int32_t>(gothic.data(), 1)) == "\xef\xbf\xbd");
  CHECK(clip().decode(gothic) == "\xf0\x90\x8c\xb0 ");
  CHECK_THROWS_AS(clip().decode(std::vector<int32_t>{49408}), Error);
  CHECK_THROWS_AS(clip().decode(std::vector<int32_t>{-1}), Error);
}

TEST_CASE("tokenizer: text cleaning follows Python's html.unescape, isspace and lower") {
  // html.unescape (HTML5 rules), applied twice by simple_tokenizer.
  CHECK(html_unescape("cat&dog &amp; friends &lt;3") == "cat&dog & friends <3");
  CHECK(html_unescape("&amp;lt;") == "&lt;");
  CHECK(clip_clean_text("&amp;lt;") == "<");
  CHECK(html_unescape("&#65;&#x42;&#X43") == "ABC");        // ';' optional for numbers
  CHECK(html_unescape("&#128;") == "\xe2\x82\xac");         // Windows-1252: euro sign
  CHECK(html_unescape("&#0;") == "\xef\xbf\xbd");           // NUL -> U+FFFD
  CHECK(html_unescape("&#xD800;") == "\xef\xbf\xbd");       // surrogate -> U+FFFD
  CHECK(html_unescape("&#1114112;") == "\xef\xbf\xbd");     // beyond U+10FFFF
  CHECK(html_unescape("&#99999999999999999999999;") == "\xef\xbf\xbd");
  CHECK(html_unescape("a&#11;b&#xFFFE;c") == "abc");        // controls / non-characters vanish
  CHECK(html_unescape("&#;&#x;&;& ") == "&#;&#x;&;& ");     // not references
  CHECK(html_unescape("&notit; &notin; &copy2024") == "\xc2\xacit; \xe2\x88\x89 \xc2\xa9" "2024");
  CHECK(html_unescape("&NotEqualTilde;") == "\xe2\x89\x82\xcc\xb8");  // two code points
  CHECK(html_unescape("&AMP &nbsp;&hellip;&apos;") == "& \xc2\xa0\xe2\x80\xa6'");
  CHECK(html_unescape("&dog &Amp; &amp") == "&dog &Amp; &");

  // Whitespace: str.strip() and the regex \s, which leaves U+001C..U+001F inside the text.
  CHECK(collapse_whitespace(" \t a \xc2\xa0\xe3\x80\x80 b\n\r\n") == "a b");
  CHECK(collapse_whitespace("a\xe2\x80\xa8\xc2\x85 b") == "a b");   // U+2028, U+0085
  CHECK(collapse_whitespace("\x1c" "a\x1c" "b\x1f") == "a\x1c" "b");
  CHECK(collapse_whitespace("a\xe2\x80\x8b" "b") == "a\xe2\x80\x8b" "b");  // U+200B is not space

  // lower(): Unicode, final sigma, U+0130's two-code-point lower case.
  CHECK(unicode_lower("UPPER MiXeD") == "upper mixed");
  CHECK(unicode_lower("\xc3\x86\xc3\x98\xc3\x85") == "\xc3\xa6\xc3\xb8\xc3\xa5");                   // ÆØÅ
  CHECK(unicode_lower("\xce\x9f\xce\x94\xce\x9f\xce\xa3") == "\xce\xbf\xce\xb4\xce\xbf\xcf\x82");   // ΟΔΟΣ -> οδος
  CHECK(unicode_lower("\xce\xa3\xce\x91") == "\xcf\x83\xce\xb1");                                   // ΣΑ -> σα
  CHECK(unicode_lower("\xce\x91\xce\xa3.") == "\xce\xb1\xcf\x82.");                                 // ΑΣ. -> ας.
  CHECK(unicode_lower("\xc4\xb0") == "i\xcc\x87");                                                  // İ -> i̇
  CHECK(unicode_lower("\xe1\xba\x9e") == "\xc3\x9f");                                               // ẞ -> ß

  CHECK_THROWS_WITH_AS(clip_clean_text("bad \xff byte"), doctest::Contains("byte 4"), Error);
}

TEST_CASE("tokenizer: the pre-tokenizer splits like CLIP's pattern") {
  using V = std::vector<std::string>;
  CHECK(Tokenizer::split_words("it's a dog's life, isn't it? we'll see") ==
        V{"it", "'s", "a", "dog", "'s", "life", ",", "isn", "'t", "it", "?", "we", "'ll", "see"});
  CHECK(Tokenizer::split_words("they've i'm she'd you're") ==
        V{"they", "'ve", "i", "'m", "she", "'d", "you", "'re"});
  CHECK(Tokenizer::split_words("3.14 1,000 4k") == V{"3", ".", "1", "4", "1", ",", "0", "0", "0", "4", "k"});
  CHECK(Tokenizer::split_words("!!!'s ''s") == V{"!!!'", "s", "''", "s"});
  CHECK(Tokenizer::split_words("((brackets)) <angle>") == V{"((", "brackets", "))", "<", "angle", ">"});
  CHECK(Tokenizer::split_words("a<|endoftext|>b <|startoftext|>") == V{"a", "<|endoftext|>", "b", "<|startoftext|>"});
  CHECK(Tokenizer::split_words("x\xc5\xbf") == V{"x\xc5\xbf"});          // ſ is a letter...
  CHECK(Tokenizer::split_words("x'\xc5\xbf") == V{"x", "'\xc5\xbf"});    // ...that folds to s after '
  CHECK(Tokenizer::split_words("\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xae \xf0\x9f\x90\xb6\xf0\x9f\x90\xb1!") ==
        V{"\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xae", "\xf0\x9f\x90\xb6\xf0\x9f\x90\xb1!"});
  CHECK(Tokenizer::split_words("\xc2\xb2\xe2\x85\xab" "5") == V{"\xc2\xb2", "\xe2\x85\xab", "5"});  // ²Ⅻ5: one number each
  CHECK(Tokenizer::split_words("a\x1c" "b") == V{"a", "\x1c", "b"});
  CHECK(Tokenizer::split_words("").empty());
}

TEST_CASE("tokenizer: SD input truncation, padding id and the warning") {
  REQUIRE_MESSAGE(!(!have_vocab()), "reference data missing (../shared beside the checkout)");
  std::string prompt;
  for (int i = 0; i < 80; ++i) prompt += "cat ";
  SdTokens sd = clip().encode_for_sd(prompt);
  const int32_t cat = clip().symbol_id("cat</w>");
  REQUIRE(cat >= 0);
  CHECK(sd.prompt_tokens == 80);
  CHECK(sd.truncated);
  CHECK(sd.ids.size() == 77);
  CHECK(sd.ids[0] == 49406);
  for (int k = 1; k <= 75; ++k) CHECK(sd.ids[(size_t)k] == cat);
  CHECK(sd.ids[76] == 49407);
  CHECK(sd.truncation_warning() == "prompt is 80 tokens; the model sees only 75 \xe2\x80\x94 the rest is ignored");

  SdTokens exact = clip().encode_for_sd(prompt.substr(0, 75 * 4));
  CHECK(!exact.truncated);
  CHECK(exact.truncation_warning().empty());
  CHECK(exact.ids[76] == 49407);

  SdTokens zero_pad = clip().encode_for_sd("a cat", 77, 0);
  CHECK(zero_pad.ids[0] == 49406);
  CHECK(zero_pad.ids[3] == 49407);  // EOS right after the prompt...
  for (size_t k = 4; k < 77; ++k) CHECK(zero_pad.ids[k] == 0);  // ...then the padding id
}

TEST_CASE("tokenizer: malformed vocabulary files are errors that name the file") {
  TempDir dir("bad_vocab");
  const fs::path bad_merges = dir.path / "bad_merges.txt";
  write_file(bad_merges, "#header\na b\nthree parts here\n");
  CHECK_THROWS_WITH_AS(Tokenizer::load(bad_merges.string()), doctest::Contains("line 3"), Error);
  // A merge whose halves no earlier merge made.
  write_file(bad_merges, "#header\nab c\n");
  CHECK_THROWS_WITH_AS(Tokenizer::load(bad_merges.string()), doctest::Contains("line 2"), Error);
  write_file(bad_merges, "just a header\n");
  CHECK_THROWS_WITH_AS(Tokenizer::load(bad_merges.string()), doctest::Contains("not a BPE merges file"), Error);
  CHECK_THROWS_WITH_AS(Tokenizer::load((dir.path / "missing.txt.gz").string()), doctest::Contains("missing.txt.gz"), Error);

  // vocab.json without merges.txt beside it.
  write_file(dir.path / "vocab.json", "{\"a\": 0}");
  CHECK_THROWS_WITH_AS(Tokenizer::load((dir.path / "vocab.json").string()), doctest::Contains("merges.txt"), Error);
  // A vocabulary without the byte symbols or special tokens.
  write_file(dir.path / "merges.txt", "#version: 0.2\n");
  CHECK_THROWS_WITH_AS(Tokenizer::load((dir.path / "vocab.json").string()), doctest::Contains("lacks the token"), Error);
  // Repeated ids.
  write_file(dir.path / "vocab.json", "{\"a\": 0, \"b\": 0}");
  CHECK_THROWS_WITH_AS(Tokenizer::load((dir.path / "vocab.json").string()), doctest::Contains("repeated"), Error);
  // Not JSON.
  write_file(dir.path / "vocab.json", "{\"a\": ");
  CHECK_THROWS_AS(Tokenizer::load((dir.path / "vocab.json").string()), Error);
  // An empty folder.
  fs::create_directories(dir.path / "empty");
  CHECK_THROWS_WITH_AS(Tokenizer::load((dir.path / "empty").string()), doctest::Contains("no tokenizer vocabulary"), Error);
}

TEST_CASE("tokenizer: BPE merges the lowest-ranked pair first (synthetic vocabulary)") {
  // Vocabulary: 256 bytes, 256 bytes + "</w>", one symbol per merge (512 + rank), BOS, EOS.
  const Tokenizer t = Tokenizer::from_bpe_merges("#version\nb c</w>\na b\nc a\nca t</w>\na a\n", "synthetic");
  CHECK(t.vocab_size() == 512 + 5 + 2);
  CHECK(t.bos_id() == 517);
  CHECK(t.eos_id() == 518);
  auto byte = [](char c) { return (int32_t)((unsigned char)c - 33); };          // printable bytes from '!'
  auto byte_end = [](char c) { return (int32_t)(256 + (unsigned char)c - 33); };
  // "abc": pairs (a,b) rank 1 and (b,c</w>) rank 0 -> b c</w> merges first, then nothing applies.
  CHECK(t.encode("abc") == std::vector<int32_t>{byte('a'), 512});
  // "cat": c a -> ca (rank 2), then ca t</w> (rank 3) -> one token.
  CHECK(t.encode("cat") == std::vector<int32_t>{515});
  CHECK(t.encode("cats") == std::vector<int32_t>{514, byte('t'), byte_end('s')});
  // Repeated pairs merge left to right without overlapping: a a a</w> -> aa a</w>.
  CHECK(t.encode("aaa") == std::vector<int32_t>{516, byte_end('a')});
  CHECK(t.encode("aaaa") == std::vector<int32_t>{516, byte('a'), byte_end('a')});
  // A single character is its end-of-word byte symbol; the special tokens map to BOS/EOS.
  CHECK(t.encode("x") == std::vector<int32_t>{byte_end('x')});
  CHECK(t.encode("<|startoftext|> <|endoftext|>") == std::vector<int32_t>{517, 518});
  CHECK(t.decode(t.encode("abc cat")) == "abc cat ");
}
