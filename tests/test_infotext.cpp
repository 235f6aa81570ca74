// A1111 metadata: the parameters text read back by A1111's own published rule (its regex, as
// documented in modules/infotext_utils.py, reimplemented here independently of the library's
// scanner), PNG iTXt chunks read by libpng and by Python's PIL (when installed), SHA-256 against
// the FIPS 180-2 test vectors, and the Model hash of the demo model's file.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/io/infotext.h"
#include "runtime/io/json.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

// A1111's parse_generation_parameters, from its documented form:
//   re_param = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
//   *lines, lastline = x.strip().split("\n"); the last line holds parameters when
//   len(re_param.findall(lastline)) >= 3; values "..." are json.loads'ed (unquote).
struct A1111Parsed {
  std::string prompt, negative;
  std::map<std::string, std::string> params;
};
A1111Parsed a1111_parse(const std::string& text) {
  static const std::regex re_param(R"(\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$))");
  std::vector<std::string> lines;
  std::string s = text;
  while (!s.empty() && std::isspace((unsigned char)s.back())) s.pop_back();
  while (!s.empty() && std::isspace((unsigned char)s.front())) s.erase(0, 1);
  for (size_t p = 0;;) {
    size_t nl = s.find('\n', p);
    lines.push_back(s.substr(p, nl == std::string::npos ? std::string::npos : nl - p));
    if (nl == std::string::npos) break;
    p = nl + 1;
  }
  A1111Parsed r;
  std::string last = lines.back();
  lines.pop_back();
  auto begin = std::sregex_iterator(last.begin(), last.end(), re_param);
  if (std::distance(begin, std::sregex_iterator()) < 3) lines.push_back(last), last.clear();
  bool neg = false;
  for (auto line : lines) {
    if (line.rfind("Negative prompt:", 0) == 0) neg = true, line = line.substr(16);
    while (!line.empty() && line.front() == ' ') line.erase(0, 1);
    std::string& dst = neg ? r.negative : r.prompt;
    dst += (dst.empty() ? "" : "\n") + line;
  }
  for (auto it = std::sregex_iterator(last.begin(), last.end(), re_param); it != std::sregex_iterator(); ++it) {
    std::string v = (*it)[2];
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = vksd::Json::parse(v).as_string();
    r.params[(*it)[1]] = v;
  }
  return r;
}

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("vksd_infotext_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(dir); }
  ~TempDir() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("infotext: A1111's quote rule") {
  CHECK(vksd::a1111_quote("Euler a") == "Euler a");
  CHECK(vksd::a1111_quote("sd, v1.5") == "\"sd, v1.5\"");
  CHECK(vksd::a1111_quote("a:b") == "\"a:b\"");
  CHECK(vksd::a1111_quote("two\nlines \"q\"") == "\"two\\nlines \\\"q\\\"\"");
  CHECK(vksd::a1111_quote("ünïcode, ok") == "\"ünïcode, ok\"");  // ensure_ascii=False: UTF-8 kept
}

TEST_CASE("infotext: what vksd writes, A1111's regex reads back") {
  vksd::Infotext info;
  info.prompt = "a (red:1.2) apple, on a table\nsecond line: with colon";
  info.negative_prompt = "blurry, ugly";
  info.params = {{"Steps", "20"},       {"Sampler", "DPM++ 2M Karras"}, {"CFG scale", "7.5"},
                 {"Seed", "42"},        {"Size", "512x768"},            {"Model hash", "6ce0161689"},
                 {"Model", "my, model: v2"}, {"Mask", "yes"},           {"Denoising strength", "0.75"},
                 {"RNG", "CPU"}};
  const std::string text = vksd::format_infotext(info);
  CHECK(text.find("Mask") == std::string::npos);  // A1111 does not know it: dropped
  CHECK(text.find("Model: \"my, model: v2\"") != std::string::npos);
  auto a = a1111_parse(text);
  CHECK(a.prompt == info.prompt);
  CHECK(a.negative == info.negative_prompt);
  CHECK(a.params.size() == 9);
  for (const auto& [k, v] : info.params)
    if (k != "Mask") CHECK_MESSAGE(a.params[k] == v, k);
  // The library's own reader agrees, in order.
  auto b = vksd::parse_infotext(text);
  CHECK(b.prompt == info.prompt);
  CHECK(b.negative_prompt == info.negative_prompt);
  REQUIRE(b.params.size() == 9);
  CHECK(b.get("Model") == std::optional<std::string>("my, model: v2"));
  CHECK(b.params[0].first == "Steps");
}

TEST_CASE("infotext: parse A1111's own docstring example and a prompt without parameters") {
  const std::string ex =
      "girl with an artist's beret, determined, blue eyes, ((eyeshadow))\n"
      "Negative prompt: ugly, fat, [blurry], bad anatomy\n"
      "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b";
  auto p = vksd::parse_infotext(ex);
  CHECK(p.prompt == "girl with an artist's beret, determined, blue eyes, ((eyeshadow))");
  CHECK(p.negative_prompt == "ugly, fat, [blurry], bad anatomy");
  CHECK(p.get("Seed") == std::optional<std::string>("965400086"));
  CHECK(p.get("Model hash") == std::optional<std::string>("45dee52b"));
  CHECK(p.get("Sampler") == std::optional<std::string>("Euler a"));
  // Fewer than three pairs on the last line: it is prompt text (A1111's rule).
  auto q = vksd::parse_infotext("a cat\nStyle: watercolor");
  CHECK(q.prompt == "a cat\nStyle: watercolor");
  CHECK(q.params.empty());
}

TEST_CASE("infotext: SHA-256 (FIPS 180-2 vectors) and A1111's short model hash with its cache") {
  TempDir t;
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream(t.path(name), std::ios::binary) << data;
    return t.path(name);
  };
  CHECK(vksd::sha256_file(write("empty", "")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(vksd::sha256_file(write("abc", "abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(vksd::sha256_file(write("two", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // A million 'a' (several 1 MiB reads).
  CHECK(vksd::sha256_file(write("million", std::string(1000000, 'a'))) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK_THROWS_AS(vksd::sha256_file(t.path("missing")), vksd::Error);

  const char* old = std::getenv("XDG_CACHE_HOME");
  const std::string saved = old ? old : "";
  setenv("XDG_CACHE_HOME", t.path("cache").c_str(), 1);
  const std::string f = write("model.safetensors", "abc");
  CHECK(vksd::a1111_model_hash(f) == "ba7816bf8f");
  const std::string cache = slurp(t.path("cache") + "/vksd/model_hashes.tsv");
  CHECK(cache.find("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") != std::string::npos);
  CHECK(vksd::a1111_model_hash(f) == "ba7816bf8f");  // from the cache
  write("model.safetensors", "abcd");                  // a changed file is hashed again
  CHECK(vksd::a1111_model_hash(f) == "88d4266fd4");
  CHECK(vksd::a1111_model_hash(t.dir.string()) == "");  // a folder has no A1111 hash
  if (old) setenv("XDG_CACHE_HOME", saved.c_str(), 1);
  else unsetenv("XDG_CACHE_HOME");
}

TEST_CASE("infotext: PNG parameters in an iTXt chunk, UTF-8 intact, read by libpng and PIL") {
  TempDir t;
  const std::string params = "一只猫, café (Ünïcode:1.1)\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 7";
  vksd::Image img(8, 4, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = (uint8_t)(i * 7);
  const std::string png = t.path("x.png");
  vksd::write_png(png, img, {{"parameters", params}});
  const std::string bytes = slurp(png);
  CHECK(bytes.find("iTXt") != std::string::npos);
  CHECK(bytes.find("tEXt") == std::string::npos);
  auto text = vksd::read_png_text(png);
  REQUIRE(text.size() == 1);
  CHECK(text[0].first == "parameters");
  CHECK(text[0].second == params);
  // Pixels survive (stb_image decodes what libpng wrote).
  CHECK(vksd::read_image(png, 3).pixels == img.pixels);

  // Python's PIL, as A1111 and most tools read PNG info (skipped when PIL is not installed;
  // Debian's python3-pil lives with /usr/bin/python3, which a pyenv python3 may shadow).
  std::string py;
  for (const char* cand : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(cand) + " -c 'import PIL' >/dev/null 2>&1").c_str()) == 0) {
      py = cand;
      break;
    }
  if (py.empty()) {
    MESSAGE("python3-pil not installed: PIL check skipped");
    return;
  }
  const std::string out = t.path("pil.txt");
  const std::string cmd = py + " -c \"import sys; from PIL import Image; "
                          "open(sys.argv[2], 'w', encoding='utf-8').write(Image.open(sys.argv[1]).info['parameters'])\" " +
                          vksd::test::shell_quote(png) + " " + vksd::test::shell_quote(out);
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(slurp(out) == params);
}

TEST_CASE("infotext: a generation's parameters carry the demo model's A1111 hash") {
  auto pipe = vksd::test::demo_pipeline();
  vksd::GenerateParams p;
  p.prompt = "a yellow face, smiling";
  p.negative_prompt = "";
  p.width = p.height = 64;
  p.seed = 5;
  p.sampler = vksd::SamplerKind::DDIM;
  p.eta = 0;
  const std::string text = pipe->parameters_text(p);
  auto a = a1111_parse(text);
  CHECK(a.prompt == p.prompt);
  CHECK(a.params["Model hash"] == vksd::sha256_file(vksd::test::demo_model_path()).substr(0, 10));
  CHECK(a.params["Sampler"] == "DDIM");
  CHECK(a.params["Eta DDIM"] == "0");  // A1111's key for DDIM's eta
  CHECK(a.params["Seed"] == "5");
  CHECK(a.params["Size"] == "64x64");
  CHECK(a.params["RNG"] == "CPU");
  for (const auto& [k, v] : a.params) CHECK_MESSAGE(vksd::a1111_known_key(k), k);
}
