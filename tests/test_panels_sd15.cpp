// Every teaching panel on a checkpoint with the exact SD 1.5 architecture (`vksd random-model`:
// UNet 320..1280 channels with 16 cross-attention layers, CLIP ViT-L/14 768 wide, the 512-channel
// VAE; random weights, so the images are noise but every shape, layer count and code path is
// SD 1.5's). No real checkpoint can be downloaded here; this is the check that nothing in the
// panels is sized for the demo model. One headless run opens all eight panels at once (64x64,
// 2 DDIM steps: loading and validating 2 GiB of weights dominates) and the layout file's numbers
// are compared with what the SD 1.5 architecture implies.
#include <doctest/doctest.h>

#include "runtime/model/model_config.h"
#include "tests/viewer_harness.h"

using namespace vksd::test;

namespace {

const Json& panel(const Shot& s, const char* name) { return at(at(s.layout, "panels"), name); }
double num(const Json& p, const char* key) { return at(p, key).as_number(); }

// Written once per build directory (~45 s, 2 GiB) through the CLI, as a user would.
std::string sd15_checkpoint() {
  const std::string path = std::string(VKSD_BINARY_DIR) + "/sd15_random.safetensors";
  if (!fs::exists(path)) {
    auto r = run_vksd("random-model -o " + shell_quote(path));
    INFO(r.out);
    REQUIRE(r.code == 0);
  }
  return path;
}

}  // namespace

TEST_CASE("panels: all eight work on an SD 1.5-architecture checkpoint") {
  NEED_VIEWER();
  REQUIRE_SHARED();
  const std::string model = sd15_checkpoint();
  const std::string vocab = shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz";
  ViewerFixture fx;
  std::string args = "-m " + shell_quote(model) + " --vocab " + shell_quote(vocab) +
                     " -W 64 -H 64 -p 'red apple' --steps 2 --seed 3 --sampler ddim --cfg-scale 5 --window 1600x1000";
  // All three networks resident: lavapipe reports a 2 GiB heap (it is host memory), just below
  // SD 1.5's 2,077 MiB, and the automatic --lowvram would reload the UNet for prompt B (CI time).
  args += " --memory-budget 4096";
  for (const char* p : {"tokens", "latent", "schedule", "attention", "guidance", "compare", "forward", "hood"})
    args += std::string(" --panel ") + p;
  args += " --panel-set 'compare.prompt_b=green apple' --panel-set compare.run=1 --panel-set forward.t=600";
  Shot s = fx.view("sd15", args);
  INFO(s.out);
  CHECK(s.code == 0);
  CHECK(no_validation_messages(s.out));
  CHECK(s.state() == "done");

  const vksd::ModelConfig sd15;  // the architecture the checkpoint was written with
  for (const char* p : {"tokens", "latent", "schedule", "attention", "guidance", "compare", "forward", "hood"}) {
    INFO("panel " << p);
    CHECK(stddev(crop(s.image, at(panel(s, p), "rect"))) > 10);  // drawn, not blank (they overlap)
  }
  const Json& tokens = panel(s, "tokens");
  CHECK(num(tokens, "width") == sd15.clip.width);  // 768: CLIP ViT-L/14's hidden size
  CHECK(num(tokens, "token_count") == 2);
  CHECK(at(tokens, "norms").as_array("norms").size() == 4);  // BOS, red, apple, EOS

  const Json& latent = panel(s, "latent");
  CHECK(num(latent, "channels") == 4);
  CHECK(at(latent, "latent_size").as_array("latent_size").at(0).as_number() == 8);  // 64 / 8

  const Json& schedule = panel(s, "schedule");
  CHECK(num(schedule, "ticks") == 2);
  CHECK(at(schedule, "from_run").as_bool());

  const Json& attention = panel(s, "attention");
  CHECK(at(attention, "maps").as_bool());
  CHECK(num(attention, "steps_row") >= 2);
  CHECK(num(attention, "map_max") > 0);
  CHECK(num(attention, "map_max") <= 1);

  const Json& compare = panel(s, "compare");
  CHECK(num(compare, "a_steps") == num(compare, "b_steps"));
  CHECK(num(compare, "a_steps") >= 2);

  CHECK(num(panel(s, "forward"), "decoded_t") == 600);

  // SD 1.5's UNet: time embedding, conv_in, 11 input blocks, the middle block, 12 output
  // blocks, the output head.
  const Json& hood = panel(s, "hood");
  CHECK(at(hood, "timestamps").as_bool());
  CHECK(num(hood, "blocks") == 27);
  CHECK(num(hood, "unet_gpu_ms") > 0);
}
