// The guidance and forward-process teaching panels as a student sees them (Xvfb screenshots).
#include <doctest/doctest.h>

#include "tests/viewer_harness.h"

using namespace vksd::test;

namespace {

const Json& panel(const Shot& s, const char* name) {
  const Json& panels = at(s.layout, "panels");
  return at(panels, name);
}

// Panel image `key` of panel `name` in the shot, sampled like a canvas item (latent pixels).
Image panel_image(const Shot& s, const char* name, const char* key, int w, int h) {
  Shot view = s;
  view.layout = Json::parse("{\"r\": " + std::string("[") + std::to_string(rect_at(at(panel(s, name), key), 0)) + ", " +
                            std::to_string(rect_at(at(panel(s, name), key), 1)) + ", " +
                            std::to_string(rect_at(at(panel(s, name), key), 2)) + ", " +
                            std::to_string(rect_at(at(panel(s, name), key), 3)) + "], \"image_size\": [" +
                            std::to_string(w) + ", " + std::to_string(h) + "]}");
  return view.item("r");
}

const std::string kRun = "-p 'red apple' --steps 8 --seed 7 --sampler euler --cfg-scale 5 --window 1600x1000 ";

}  // namespace

TEST_CASE("panel guidance: the slider re-forms the guided x0-hat from the stored predictions, without a UNet run") {
  REQUIRE(XvfbDisplay::available());
  ViewerFixture fx;
  Shot s1 = fx.view("g1", kRun + "--stop-at 4 --panel guidance --panel-set guidance.scale=1");
  Shot s9 = fx.view("g9", kRun + "--stop-at 4 --panel guidance --panel-set guidance.scale=9");
  INFO(s1.out << s9.out);
  for (const Shot* s : {&s1, &s9}) {
    CHECK(s->code == 0);
    CHECK(no_validation_messages(s->out));
    CHECK(s->number("steps_recorded") == 4);  // paused: the slider ran no UNet step
    CHECK(stddev(crop(s->image, at(panel(*s, "guidance"), "rect"))) > 10);
  }
  const Image u1 = panel_image(s1, "guidance", "uncond", 8, 8), u9 = panel_image(s9, "guidance", "uncond", 8, 8);
  const Image c1 = panel_image(s1, "guidance", "cond", 8, 8), c9 = panel_image(s9, "guidance", "cond", 8, 8);
  const Image g1 = panel_image(s1, "guidance", "guided", 8, 8), g9 = panel_image(s9, "guidance", "guided", 8, 8);
  // The two stored predictions are the same whatever the slider says; the guided one moves.
  CHECK(mean_abs_diff(u1, u9) == 0.0);
  CHECK(mean_abs_diff(c1, c9) == 0.0);
  CHECK(mean_abs_diff(g1, g9) > 5);
  // Scale 1 is the prompt alone.
  CHECK(mean_abs_diff(g1, c1) <= 1.0);
  CHECK(mean_abs_diff(c1, u1) > 1.0);
}

TEST_CASE("panel forward: x_t at a low and a high noise level, through the latent preview and the VAE") {
  REQUIRE(XvfbDisplay::available());
  ViewerFixture fx;
  Shot lo = fx.view("f100", kRun + "--panel forward --panel-set forward.t=100");
  Shot hi = fx.view("f900", kRun + "--panel forward --panel-set forward.t=900");
  INFO(lo.out << hi.out);
  for (const Shot* s : {&lo, &hi}) {
    CHECK(s->code == 0);
    CHECK(no_validation_messages(s->out));
    CHECK(rect_at(at(panel(*s, "forward"), "decoded"), 2) > 0);
  }
  CHECK(panel(lo, "forward").find("decoded_t")->as_number() == 100);
  CHECK(panel(hi, "forward").find("decoded_t")->as_number() == 900);
  // The clean image is the run's final image in both; x_t differs with t, latent and decoded.
  const Image x0lo = panel_image(lo, "forward", "x0", 64, 64), x0hi = panel_image(hi, "forward", "x0", 64, 64);
  CHECK(mean_abs_diff(x0lo, x0hi) == 0.0);
  // ... which is the image vksd generate makes with these settings (the canvas is under the panel).
  auto gen = run_vksd("generate -p 'red apple' --steps 8 --seed 7 --sampler euler --cfg-scale 5 -o " + shell_quote(fx.path("gen.png")));
  REQUIRE(gen.code == 0);
  CHECK(mean_abs_diff(x0lo, vksd::read_image(fx.path("gen.png"), 3)) == 0.0);
  CHECK(mean_abs_diff(panel_image(lo, "forward", "xt", 8, 8), panel_image(hi, "forward", "xt", 8, 8)) > 10);
  const Image dlo = panel_image(lo, "forward", "decoded", 64, 64), dhi = panel_image(hi, "forward", "decoded", 64, 64);
  CHECK(mean_abs_diff(dlo, dhi) > 10);
  // At t = 100 the decoded x_t is still close to the clean image; at t = 900 it is not.
  CHECK(mean_abs_diff(dlo, x0lo) < mean_abs_diff(dhi, x0hi));
}

TEST_CASE("panel compare: two prompts with the same seed give two different timelines and their difference") {
  REQUIRE(XvfbDisplay::available());
  ViewerFixture fx;
  Shot s = fx.view("cmp", kRun + "--panel compare --panel-set 'compare.prompt_b=green apple' --panel-set compare.run=1");
  INFO(s.out);
  CHECK(s.code == 0);
  CHECK(no_validation_messages(s.out));
  const Json& p = panel(s, "compare");
  CHECK(p.find("a_steps")->as_number() == 8);
  CHECK(p.find("b_steps")->as_number() == 8);
  const Image a = panel_image(s, "compare", "a", 8, 8), b = panel_image(s, "compare", "b", 8, 8);
  CHECK(stddev(a) > 5);
  CHECK(mean_abs_diff(a, b) > 3);
  CHECK(stddev(panel_image(s, "compare", "diff", 8, 8)) > 5);
  // The canvas ran prompt B last, with the same seed.
  CHECK(s.number("seed") == 7);
}
