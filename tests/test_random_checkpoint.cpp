// Random-weight checkpoints (runtime/model/random_checkpoint.h) and the streaming safetensors
// writer under them: what is written loads back through the ordinary checkpoint loader with the
// architecture it was written for and exactly the values random_weight() promises.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "runtime/error.h"
#include "runtime/gpu/memory.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/random_checkpoint.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/safetensors_writer.h"
#include "runtime/model/sd1_layout.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace vksd;

namespace {

// A small SD 1.x architecture (the shapes of the tiny reference model), so the test is quick.
ModelConfig small_config() {
  ModelConfig c;
  c.unet.model_channels = 32;
  c.unet.channel_mult = {1, 2};
  c.unet.attention_levels = {true, false};
  c.unet.num_res_blocks = 1;
  c.unet.context_dim = 96;
  c.unet.num_heads = 8;
  c.vae.ch = 32;
  c.vae.ch_mult = {1, 2};
  c.vae.num_res_blocks = 1;
  c.clip.width = 96;  // head counts are not in the shapes: the loader assumes SD 1.5's 12 and 8
  c.clip.layers = 2;
  c.clip.heads = 12;
  c.clip.mlp_dim = 384;
  c.clip.vocab_size = 1000;
  return c;
}

struct TempDir {
  fs::path p = fs::temp_directory_path() / ("vksd_randck_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(p); }
  ~TempDir() { fs::remove_all(p); }
};

}  // namespace

TEST_CASE("random checkpoint: loads back with its architecture and random_weight's values, f16 and f32") {
  TempDir d;
  const ModelConfig cfg = small_config();
  for (DType storage : {DType::F16, DType::F32}) {
    const std::string path = (d.p / (std::string("m_") + dtype_name(storage) + ".safetensors")).string();
    write_random_checkpoint(cfg, path, storage);
    Checkpoint ck = Checkpoint::open(path);  // the loader checks every expected tensor and shape
    const ModelConfig& got = ck.config();
    CHECK(got.unet.model_channels == 32);
    CHECK(got.unet.channel_mult == cfg.unet.channel_mult);
    CHECK(got.unet.context_dim == 96);
    CHECK(got.vae.ch == 32);
    CHECK(got.clip.width == 96);
    CHECK(got.clip.layers == 2);
    const auto specs = sd1_layout(cfg);
    CHECK(ck.tensor_names().size() == specs.size());
    double worst = 0;
    int checked = 0;
    for (size_t i = 0; i < specs.size(); i += 7, ++checked) {  // every 7th tensor, all kinds
      const auto want = random_weight(specs[i].name, specs[i].shape);
      const auto have = ck.read_f32(specs[i].name);
      REQUIRE(have.size() == want.size());
      for (size_t k = 0; k < want.size(); ++k) {
        const float w = storage == DType::F16 ? f16_to_f32(f32_to_f16(want[k])) : want[k];
        worst = std::max(worst, (double)std::fabs(have[k] - w));
      }
    }
    CHECK(checked > 10);
    CHECK(worst == 0);  // bit-exact: the writer stores what the filler gave, rounded once
    // Fan-in scaling: a conv weight's variance is 1/fan_in (uniform on +-sqrt(3/fan_in)).
    const auto w = random_weight("model.diffusion_model.input_blocks.1.0.in_layers.2.weight", {32, 32, 3, 3});
    double var = 0;
    for (float x : w) var += (double)x * x;
    var /= (double)w.size();
    CHECK(var == doctest::Approx(1.0 / (32 * 9)).epsilon(0.05));
  }
}

TEST_CASE("safetensors writer: nothing is left at the path or beside it when a tensor fails") {
  TempDir d;
  const std::string path = (d.p / "bad.safetensors").string();
  std::vector<StOutTensor> ts = {{"a", DType::F32, {4}}, {"b", DType::F16, {2, 3}}};
  CHECK_THROWS_AS(write_safetensors(path, ts, [](size_t i, std::vector<float>& v) {
                    if (i == 1) fail("filler failed");
                    v.assign(v.size(), 1.f);
                  }),
                  Error);
  CHECK(fs::is_empty(d.p));
  // And a good one round-trips, metadata included.
  write_safetensors(path, ts, [](size_t i, std::vector<float>& v) { for (size_t k = 0; k < v.size(); ++k) v[k] = (float)(i * 10 + k); },
                    {{"note", "x\"y"}});
  SafetensorsFile f(path);
  REQUIRE(f.tensors().size() == 2);
  CHECK(f.to_f32(f.at("a")) == std::vector<float>{0, 1, 2, 3});
  CHECK(f.to_f32(f.at("b")) == std::vector<float>{10, 11, 12, 13, 14, 15});
  CHECK(f.metadata().at("note") == "x\"y");
}

TEST_CASE("vksd random-model: -o is required, unknown options are errors") {
  auto r = test::run_vksd("random-model");
  CHECK(r.code != 0);
  CHECK(r.out.find("-o FILE is required") != std::string::npos);
  r = test::run_vksd("random-model -o /nonexistent-dir/x.safetensors --bogus");
  CHECK(r.code != 0);
  CHECK(r.out.find("unknown option '--bogus'") != std::string::npos);
  r = test::run_vksd("random-model -o /nonexistent-dir/x.safetensors");
  CHECK(r.code != 0);
  CHECK(r.out.find("cannot write '/nonexistent-dir/x.safetensors'") != std::string::npos);
}
