// What a newcomer from A1111 / stable-diffusion.cpp brings: their flag spellings and sampler
// names, --from-png re-runs, --version, --help on every command, the demo model as the default of
// info/tokenize, and warnings (or --strict refusals) for A1111 prompt syntax vksd does not run.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "runtime/diffusion/samplers.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/io/infotext.h"
#include "runtime/text/prompt_syntax.h"
#include "runtime/text/tokenizer.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using vksd::test::run_vksd;
using vksd::test::shell_quote;

namespace {

#define NEED_BINARY() REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built")

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("vksd_spell_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(dir); }
  ~TempDir() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

// The demo model, whatever VKSD_MODEL / VKSD_VOCAB say in the test environment.
const std::string kEnv = "env -u VKSD_MODEL -u VKSD_VOCAB";

std::string params_of(const std::string& png) {
  for (const auto& [k, v] : vksd::read_png_text(png))
    if (k == "parameters") return v;
  return "";
}

}  // namespace

TEST_CASE("prompt syntax: LyCORIS tags, prompt editing, alternation and AND are found, emphasis and LoRA tags are not") {
  auto f = vksd::find_unsupported_syntax("a <lyco:detail:0.8> cat, [dog:fox:0.5], [red|blue] AND (sky:1.2) [soft] <lora:x:0.5>");
  REQUIRE(f.size() == 4);
  CHECK(f[0].construct == "LyCORIS");
  CHECK(f[0].text == "<lyco:detail:0.8>");
  CHECK(f[0].offset == 2);
  CHECK(vksd::find_unsupported_syntax("a <lora:detail:0.8> cat").empty());  // applied by the runtime
  CHECK(f[1].construct == "prompt editing");
  CHECK(f[1].text == "[dog:fox:0.5]");
  CHECK(f[2].construct == "alternation");
  CHECK(f[2].text == "[red|blue]");
  CHECK(f[3].construct == "composable diffusion (AND)");
  // Supported emphasis, escaped brackets, a weight inside brackets, 'and' in words: nothing.
  CHECK(vksd::find_unsupported_syntax("(a:1.2) [b] [[c]] \\[d:e\\] [(f:1.3)] ANDROID sand and").empty());
  CHECK(vksd::find_unsupported_syntax("[a::10] [b:5]").size() == 2);  // removal and addition forms
  CHECK(vksd::find_unsupported_syntax("<hypernet:x:1>")[0].construct == "hypernetwork");
  const std::string msg = vksd::describe_unsupported(f, "prompt");
  CHECK(msg.find("prompt: prompt editing '[dog:fox:0.5]' is not supported") != std::string::npos);
}

TEST_CASE("samplers: A1111 names, aliases and --scheduler") {
  using K = vksd::SamplerKind;
  CHECK(vksd::parse_sampler("Euler a") == K::EulerAncestral);
  CHECK(vksd::parse_sampler("euler a") == K::EulerAncestral);
  CHECK(vksd::parse_sampler("k_euler_a") == K::EulerAncestral);
  CHECK(vksd::parse_sampler("DPM++ 2M Karras") == K::DpmPP2MKarras);
  CHECK(vksd::parse_sampler("DPM++ 2M") == K::DpmPP2M);
  CHECK(vksd::parse_sampler("DDIM") == K::DDIM);
  CHECK(vksd::parse_sampler("dpm++2m") == K::DpmPP2M);
  for (auto k : {K::DDIM, K::DDPM, K::Euler, K::EulerAncestral, K::DpmPP2M, K::DpmPP2MKarras, K::LCM})
    CHECK(vksd::parse_sampler(vksd::sampler_a1111_name(k)) == k);  // what we write, we read
  CHECK_THROWS_WITH_AS(vksd::parse_sampler("Heun"), doctest::Contains("unknown sampler 'Heun'"), vksd::Error);
  CHECK(vksd::apply_scheduler(K::DpmPP2M, "karras") == K::DpmPP2MKarras);
  CHECK(vksd::apply_scheduler(K::DpmPP2M, "Karras") == K::DpmPP2MKarras);
  CHECK(vksd::apply_scheduler(K::DpmPP2MKarras, "") == K::DpmPP2MKarras);
  CHECK(vksd::apply_scheduler(K::DpmPP2MKarras, "discrete") == K::DpmPP2M);
  CHECK(vksd::apply_scheduler(K::Euler, "automatic") == K::Euler);
  CHECK_THROWS_WITH_AS(vksd::apply_scheduler(K::Euler, "karras"), doctest::Contains("dpm++2m only"), vksd::Error);
  CHECK_THROWS_WITH_AS(vksd::apply_scheduler(K::DpmPP2M, "exponential"), doctest::Contains("not implemented"),
                       vksd::Error);
}

TEST_CASE("cli: --version and --help on every command") {
  NEED_BINARY();
  auto v = run_vksd("--version");
  CHECK(v.code == 0);
  CHECK(v.out.rfind("vksd ", 0) == 0);
  std::vector<const char*> cmds = {"generate", "devices", "info", "tokenize", "random-model", "fit-preview"};
  if (VKSD_VIEWER_BUILT) cmds.push_back("view");  // not in a -DVKSD_VIEWER=OFF build
  for (const char* cmd : cmds) {
    auto r = run_vksd(std::string(cmd) + " --help");
    INFO(cmd << ": " << r.out);
    CHECK(r.code == 0);
    CHECK(r.out.find("usage: vksd " + std::string(cmd)) != std::string::npos);
  }
  auto d = run_vksd("devices --bogus");
  CHECK(d.code != 0);
  CHECK(d.out.find("unknown option '--bogus'") != std::string::npos);
}

TEST_CASE("cli: info and tokenize without a model use the demo model, info takes its folder") {
  NEED_BINARY();
  const std::string demo = vksd::test::demo_model_path();
  auto i = run_vksd("info", kEnv);
  INFO(i.out);
  CHECK(i.code == 0);
  CHECK(i.out.find(demo) != std::string::npos);
  auto f = run_vksd("info " + shell_quote(fs::path(demo).parent_path().string()), kEnv);
  CHECK(f.code == 0);
  CHECK(f.out.find("model.safetensors") != std::string::npos);
  auto t = run_vksd("tokenize --ids red apple", kEnv);
  INFO(t.out);
  CHECK(t.code == 0);
  // The demo model's own small vocabulary (weights/demo/bpe_vocab.txt.gz), not CLIP's.
  const auto tok = vksd::Tokenizer::load((fs::path(demo).parent_path() / "bpe_vocab.txt.gz").string());
  std::string ids;
  for (int id : tok.encode("red apple")) ids += (ids.empty() ? "" : " ") + std::to_string(id);
  CHECK(t.out.find(ids) != std::string::npos);
}

TEST_CASE("cli generate: peers' spellings, --from-png re-runs an image, prompt syntax warnings") {
  NEED_BINARY();
  TempDir t;
  const std::string a = t.path("a.png");
  // stable-diffusion.cpp spellings: -s, --sampling-method, --scheduler; A1111's sampler name.
  auto r = run_vksd("generate -p 'a yellow face, smiling' -s 7 --steps 3 --cfg-scale 5 --sampling-method 'DPM++ 2M' "
                    "--scheduler karras -o " + shell_quote(a),
                    kEnv);
  INFO(r.out);
  REQUIRE(r.code == 0);
  auto info = vksd::parse_infotext(params_of(a));
  CHECK(info.get("Sampler") == std::optional<std::string>("DPM++ 2M Karras"));
  CHECK(info.get("Seed") == std::optional<std::string>("7"));

  // Re-run from the PNG: the same parameters and the same pixels.
  const std::string b = t.path("b.png");
  r = run_vksd("generate --from-png " + shell_quote(a) + " -o " + shell_quote(b), kEnv);
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(params_of(b) == params_of(a));
  CHECK(vksd::read_image(b).pixels == vksd::read_image(a).pixels);

  // An explicit flag overrides the PNG's value; -b (batch count) writes two files.
  r = run_vksd("generate --from-png " + shell_quote(a) + " --seed 8 -b 2 -o " + shell_quote(t.path("c.png")), kEnv);
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(vksd::parse_infotext(params_of(t.path("c_0.png"))).get("Seed") == std::optional<std::string>("8"));
  CHECK(vksd::parse_infotext(params_of(t.path("c_1.png"))).get("Seed") == std::optional<std::string>("9"));
  CHECK(vksd::read_image(t.path("c_0.png")).pixels != vksd::read_image(a).pixels);

  // A PNG without parameters is refused by name.
  vksd::write_png(t.path("plain.png"), vksd::Image(8, 8, 3));
  r = run_vksd("generate --from-png " + shell_quote(t.path("plain.png")) + " -o " + shell_quote(t.path("d.png")), kEnv);
  CHECK(r.code != 0);
  CHECK(r.out.find("has no A1111 'parameters'") != std::string::npos);

  // Unsupported prompt syntax: refused with --strict before any model load, else a warning.
  r = run_vksd("generate --strict -p 'a <hypernet:detail:0.8> face' -o " + shell_quote(t.path("e.png")), kEnv);
  CHECK(r.code != 0);
  CHECK(r.out.find("hypernetwork '<hypernet:detail:0.8>' is not supported") != std::string::npos);
  CHECK(!fs::exists(t.path("e.png")));
  r = run_vksd("generate --steps 1 -p '[smiling|sad] face' -o " + shell_quote(t.path("f.png")), kEnv);
  CHECK(r.code == 0);
  CHECK(r.out.find("warning: prompt: alternation '[smiling|sad]' is not supported") != std::string::npos);

  // karras with a sampler that has no Karras variant: a clear refusal.
  r = run_vksd("generate -p x --sampler 'Euler a' --scheduler karras -o " + shell_quote(t.path("g.png")), kEnv);
  CHECK(r.code != 0);
  CHECK(r.out.find("dpm++2m only") != std::string::npos);
}
