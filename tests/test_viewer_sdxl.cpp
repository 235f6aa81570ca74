// The viewer runs an SDXL model through the same runtime as `vksd generate` (no SDXL-specific
// viewer code): sdxl-tiny opened with `vksd view`, generated headless under Xvfb, and the final
// x0-hat on the canvas equals the CLI's PNG pixel for pixel.
#include <doctest/doctest.h>

#include <fstream>

#include "tests/sdxl_tiny.h"
#include "tests/viewer_harness.h"

using namespace vksd::test;
using vksd::Image;
using vksd::test::shell_quote;

TEST_CASE("viewer: an SDXL model (sdxl-tiny) generates in the window exactly as vksd generate makes it") {
  REQUIRE_SHARED();
  NEED_VIEWER();
  ViewerFixture fx;
  std::ofstream(fx.path("cfg.json")) << vksd::test::sdxl_tiny::config_json();
  const std::string model = "-m " + shell_quote(vksd::test::sdxl_tiny::sdxl_model()) + " --config " +
                            shell_quote(fx.path("cfg.json")) + " --vocab " +
                            shell_quote(vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz") +
                            " -p 'a photograph of an astronaut riding a horse' -W 32 -H 32 --steps 4 --seed 42"
                            " --sampler euler --cfg-scale 7.5 --fp32 ";
  auto gen = vksd::test::run_vksd("generate " + model + "-o " + shell_quote(fx.path("gen.png")));
  INFO(gen.out);
  REQUIRE(gen.code == 0);
  const Image expected = vksd::read_image(fx.path("gen.png"), 3);
  Shot s = fx.view("sdxl", model);
  INFO(s.out);
  CHECK(s.code == 0);
  CHECK(no_validation_messages(s.out));
  CHECK(s.state() == "done");
  CHECK(s.number("steps_recorded") == 4);
  const Image x0 = s.item("x0");
  CHECK(x0.width == expected.width);
  CHECK(mean_abs_diff(x0, expected) == 0.0);
}
