// `vksd generate` as a user runs it: the built binary (ctest passes VKSD_TEST_BINARY_DIR), its
// refusals of bad input (clear message, non-zero exit, no output file), and a real run on the
// tiny reference checkpoint that writes a PNG with A1111 parameters, JSON progress and step dumps.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "runtime/model/demo_model.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/io/infotext.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

std::string quote(const std::string& s) { return vksd::test::shell_quote(s); }

// `vksd generate ARGS`; `env` is prepended to the command (e.g. "env -u VKSD_VOCAB VKSD_MODEL=/x").
vksd::test::ToolRun run(const std::string& args, const std::string& env = "") {
  return vksd::test::run_vksd("generate " + args, env);
}

struct Fixture {
  fs::path dir = fs::temp_directory_path() / ("vksd_cli_" + std::to_string(::getpid()));
  std::string model = vksd::test::vectors_dir() + "/model.safetensors";
  std::string vocab = vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz";
  Fixture() { fs::create_directories(dir); }
  ~Fixture() { fs::remove_all(dir); }
  std::string out() const { return (dir / "out.png").string(); }
  std::string base() const { return "-m " + quote(model) + " --vocab " + quote(vocab) + " -o " + quote(out()) + " -p 'a cat' "; }
};

#define NEED_BINARY()                                                   \
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built")

// Each refusal: exit code != 0, the message names the problem, nothing written.
void refuses(const Fixture& fx, const std::string& args, const std::string& expect) {
  auto r = run(fx.base() + args);
  INFO("args: " << args << "\noutput: " << r.out);
  CHECK(r.code != 0);
  CHECK(r.out.find(expect) != std::string::npos);
  CHECK(!fs::exists(fx.out()));
}

}  // namespace

TEST_CASE("cli generate: --help teaches every flag") {
  NEED_BINARY();
  auto r = run("--help");
  CHECK(r.code == 0);
  for (const char* flag : {"--model", "--config", "--vocab", "--prompt", "--negative-prompt", "--steps", "--cfg-scale",
                           "--sampler", "--eta", "--seed", "--width", "--height", "--output", "--batch-count",
                           "--init-img", "--strength", "--mask", "--clip-skip", "--lowvram", "--fp32", "--save-steps", "--vae-tiling",
                           "--json", "dpm++2m_karras", "euler_a", "lcm"})
    CHECK_MESSAGE(r.out.find(flag) != std::string::npos, flag);
}

TEST_CASE("cli generate: bad arguments are refused with a clear message") {
  NEED_BINARY();
  Fixture fx;
  refuses(fx, "-W 100", "multiple of 8");
  refuses(fx, "-H 33", "multiple of 8");
  refuses(fx, "--steps 0", "--steps must be at least 1");
  refuses(fx, "--cfg-scale -1", "--cfg-scale must not be negative");
  refuses(fx, "--init-img x.png --strength 1.5", "--strength must be within [0, 1]");
  refuses(fx, "--init-img x.png --strength -0.1", "--strength must be within [0, 1]");
  refuses(fx, "--sampler heun", "unknown sampler 'heun'");
  refuses(fx, "--steps ten", "--steps wants an integer");
  refuses(fx, "--frobnicate", "unknown option");
  refuses(fx, "--mask m.png", "--mask needs --init-img");
}

TEST_CASE("cli generate: missing model, unreadable image, bad resize mode") {
  NEED_BINARY();
  Fixture fx;
  {
    auto r = run("-m " + quote((fx.dir / "nope.safetensors").string()) + " -p x -o " + quote(fx.out()));
    CHECK(r.code != 0);
    CHECK(r.out.find("model not found") != std::string::npos);
    CHECK(r.out.find("nope.safetensors") != std::string::npos);
  }
  REQUIRE_SHARED();
  {
    std::ofstream(fx.dir / "broken.png") << "definitely not a PNG";
    refuses(fx, "--init-img " + quote((fx.dir / "broken.png").string()), "broken.png");
    refuses(fx, "--init-img " + quote((fx.dir / "absent.png").string()), "absent.png");
  }
  {
    vksd::write_png((fx.dir / "init.png").string(), vksd::Image(32, 32, 3));
    vksd::write_png((fx.dir / "mask.png").string(), vksd::Image(16, 32, 1));
    // A mask of another size is fitted (tests/test_resize_frames.cpp); a bad resize mode is refused.
    refuses(fx, "--init-img " + quote((fx.dir / "init.png").string()) + " --mask " + quote((fx.dir / "mask.png").string()) +
                " --resize-mode squash",
            "unknown resize mode 'squash'");
  }
}

TEST_CASE("cli generate: no -m and no demo model is a clear error") {
  NEED_BINARY();
  if (fs::exists(fs::path(VKSD_SOURCE_DIR) / "weights/demo")) {
    MESSAGE("skipped: the demo model exists");
    return;
  }
  Fixture fx;
  auto r = run("-p 'a cat' -o " + quote(fx.out()), "env -u VKSD_MODEL");
  INFO(r.out);
  CHECK(r.code != 0);
  CHECK(r.out.find("no model given") != std::string::npos);
  // It says where it looked and how to get a model.
  CHECK(r.out.find((fs::path(VKSD_SOURCE_DIR) / "weights/demo/model.safetensors").string()) != std::string::npos);
  CHECK(r.out.find("weights/README.md") != std::string::npos);
  CHECK(r.out.find("-m PATH") != std::string::npos);
  CHECK(r.out.find("VKSD_MODEL") != std::string::npos);
}

TEST_CASE("default model: VKSD_MODEL first, then the demo folders in order, and the error says how to get one") {
  const fs::path dir = fs::temp_directory_path() / ("vksd_default_model_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  for (const char* d : {"a", "b", "diffusers/unet", "empty"}) fs::create_directories(dir / d);
  std::ofstream(dir / "b" / "model.safetensors") << "x";
  std::ofstream(dir / "file.safetensors") << "x";
  const std::string a = (dir / "a").string(), b = (dir / "b").string();

  CHECK(vksd::default_model_path(nullptr, {a, b}) == (dir / "b" / "model.safetensors").string());
  CHECK(vksd::default_model_path("", {a, b}) == (dir / "b" / "model.safetensors").string());  // empty = unset
  CHECK(vksd::default_model_path((dir / "file.safetensors").c_str(), {b}) == (dir / "file.safetensors").string());
  CHECK(vksd::default_model_path(b.c_str(), {}) == (dir / "b" / "model.safetensors").string());
  CHECK(vksd::default_model_path((dir / "diffusers").c_str(), {b}) == (dir / "diffusers").string());
  // An explicit VKSD_MODEL that is wrong is an error, never a silent fall-back to the demo.
  CHECK_THROWS_WITH_AS(vksd::default_model_path((dir / "nope").c_str(), {b}), doctest::Contains("VKSD_MODEL"), vksd::Error);
  CHECK_THROWS_WITH_AS(vksd::default_model_path((dir / "empty").c_str(), {b}), doctest::Contains("neither model.safetensors"),
                       vksd::Error);
  try {
    vksd::default_model_path(nullptr, {a});
    FAIL("expected an error");
  } catch (const vksd::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find((dir / "a" / "model.safetensors").string()) != std::string::npos);
    CHECK(msg.find("weights/README.md") != std::string::npos);
    CHECK(msg.find("-m PATH") != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("cli generate: with no -m, VKSD_MODEL's config gives the vocabulary and the image size (no other flags)") {
  NEED_BINARY();
  REQUIRE_SHARED();
  Fixture fx;
  // A copy of the tiny reference model whose config names its vocabulary in a subfolder (so that
  // nothing is found "beside the model") and a default size other than SD's 512.
  const fs::path model_dir = fx.dir / "tiny_model";
  fs::create_directories(model_dir / "vocab");
  fs::copy_file(fx.model, model_dir / "model.safetensors");
  fs::copy_file(fx.vocab, model_dir / "vocab" / "clip_bpe.txt.gz");
  // The reference model.json (a JSON object) with keys appended before its closing brace.
  const std::string tiny_json = [&] {
    std::ifstream f(vksd::test::vectors_dir() + "/model.json");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }();
  REQUIRE(tiny_json.rfind('}') != std::string::npos);
  auto write_config = [&](const std::string& extra) {
    std::ofstream(model_dir / "model.json") << tiny_json.substr(0, tiny_json.rfind('}')) << extra << "}";
  };
  const std::string env = "env -u VKSD_VOCAB VKSD_MODEL=" + quote(model_dir.string());
  const std::string args = "-p 'red apple' --steps 2 --sampler euler --seed 1 -o " + quote(fx.out());

  write_config(R"(, "sample_size": 24, "tokenizer": {"vocab": "vocab/clip_bpe.txt.gz"})");
  auto r = run(args, env);
  INFO(r.out);
  REQUIRE(r.code == 0);
  auto img = vksd::read_image(fx.out(), 3);
  CHECK(img.width == 24);
  CHECK(img.height == 24);
  CHECK(vksd::read_png_text(fx.out())[0].second.find("Size: 24x24") != std::string::npos);
  // -W/-H still win over sample_size.
  auto r2 = run(args + " -W 16", env);
  REQUIRE(r2.code == 0);
  auto img2 = vksd::read_image(fx.out(), 3);
  CHECK(img2.width == 16);
  CHECK(img2.height == 24);
  fs::remove(fx.out());

  // Without the config key the vocabulary is nowhere to be found: the key is what made it work.
  write_config("");
  auto r3 = run(args, env);
  CHECK(r3.code != 0);
  CHECK(r3.out.find("tokenizer vocabulary was not found") != std::string::npos);
  CHECK(!fs::exists(fx.out()));
}

TEST_CASE("cli generate: a tiny run writes a PNG with A1111 parameters, JSON progress and step dumps") {
  NEED_BINARY();
  REQUIRE_SHARED();
  Fixture fx;
  const auto steps_dir = fx.dir / "steps";
  auto r = run(fx.base() + "-W 32 -H 32 --steps 3 --sampler euler --cfg-scale 7.5 --seed 42 --fp32 --json --save-steps " +
               quote(steps_dir.string()));
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("{\"event\":\"step\",\"image\":0,\"step\":3,\"steps\":3") != std::string::npos);
  CHECK(r.out.find("{\"event\":\"done\"") != std::string::npos);
  auto img = vksd::read_image(fx.out(), 3);
  CHECK(img.width == 32);
  CHECK(img.height == 32);
  auto text = vksd::read_png_text(fx.out());
  REQUIRE(text.size() == 1);
  CHECK(text[0].first == "parameters");
  CHECK(text[0].second == "a cat\nSteps: 3, Sampler: Euler, CFG scale: 7.5, Seed: 42, Size: 32x32, Model hash: " +
                              vksd::sha256_file(fx.model).substr(0, 10) + ", Model: model, RNG: CPU");
  for (const char* f : {"step_001_x0.png", "step_003_xt.png", "contact_sheet.png"}) CHECK_MESSAGE(fs::exists(steps_dir / f), f);
  // Same seed, same image; batch of 2 names files by index and continues the seed.
  auto first = img.pixels;
  auto r2 = run(fx.base() + "-W 32 -H 32 --steps 3 --sampler euler --cfg-scale 7.5 --seed 42 --fp32 --batch-count 2");
  REQUIRE(r2.code == 0);
  CHECK(vksd::read_image((fx.dir / "out_0.png").string(), 3).pixels == first);
  CHECK(vksd::read_png_text((fx.dir / "out_1.png").string())[0].second.find("Seed: 43") != std::string::npos);
}

TEST_CASE("cli generate: a prompt longer than 75 tokens is encoded in chunks, and the CLI says so") {
  NEED_BINARY();
  REQUIRE_SHARED();
  Fixture fx;
  std::string long_prompt;
  for (int i = 0; i < 14; ++i) long_prompt += "a red apple on a wooden table ";  // 98 tokens
  auto r = run("-m " + quote(fx.model) + " --vocab " + quote(fx.vocab) + " -o " + quote(fx.out()) + " -p " +
               quote(long_prompt) + " -W 32 -H 32 --steps 1 --cfg-scale 1");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(r.out.find("prompt longer than 75 tokens: encoded as 2 chunks of 75 tokens") != std::string::npos);
  // A short prompt is one chunk and gets no such note.
  auto s = run(fx.base() + "-W 32 -H 32 --steps 1 --cfg-scale 1");
  CHECK(s.code == 0);
  CHECK(s.out.find("chunks of 75") == std::string::npos);
}
