// `vksd view` as a person sees it: the real window under Xvfb (started by the test), the UI
// scripted through the headless flags, and assertions on the screenshot's pixels. The layout
// file says where the canvas images are; what is in them is read from the picture. Every run
// has the validation layer on (ctest sets VKSD_VALIDATION=1): the viewer exits non-zero on any
// message, leaks at device destruction included.
#include <doctest/doctest.h>
#include <gif_lib.h>

#include "tests/viewer_harness.h"

using namespace vksd::test;


TEST_CASE("viewer: a full run shows the final image exactly as vksd generate makes it, and exports it") {
  NEED_VIEWER();
  ViewerFixture fx;
  auto gen = vksd::test::run_vksd("generate " + ViewerFixture::settings() + "-o " + shell_quote(fx.path("gen.png")));
  INFO(gen.out);
  REQUIRE(gen.code == 0);
  const Image expected = vksd::read_image(fx.path("gen.png"), 3);

  Shot s = fx.view("full", ViewerFixture::settings() + "--export-gif " + shell_quote(fx.path("steps.gif")) +
                               " --export-png " + shell_quote(fx.path("final.png")));
  INFO(s.out);
  CHECK(s.code == 0);
  CHECK(no_validation_messages(s.out));
  CHECK(s.state() == "done");
  CHECK(s.number("steps_recorded") == 8);
  CHECK(s.number("step_shown") == 7);
  CHECK(s.flag("decoded_shown"));
  // The canvas is not blank, and x̂0 there is the generated image, pixel for pixel.
  const Image x0 = s.item("x0"), xt = s.item("xt");
  CHECK(stddev(x0) > 10);
  CHECK(stddev(xt) > 10);
  CHECK(x0.width == expected.width);
  CHECK(mean_abs_diff(x0, expected) == 0.0);

  // Exported PNG: the same pixels and the same A1111 parameters text as the CLI's.
  const Image png = vksd::read_image(fx.path("final.png"), 3);
  CHECK(png.pixels == expected.pixels);
  CHECK(vksd::read_png_text(fx.path("final.png")) == vksd::read_png_text(fx.path("gen.png")));
  // Exported GIF: one frame per step, x_t beside x̂0 at the image's size, the last x̂0 = the image.
  int err = 0;
  GifFileType* gif = DGifOpenFileName(fx.path("steps.gif").c_str(), &err);
  REQUIRE(gif != nullptr);
  REQUIRE(DGifSlurp(gif) == GIF_OK);
  CHECK(gif->ImageCount == 8);
  CHECK(gif->SWidth == 2 * expected.width);
  CHECK(gif->SHeight == expected.height);
  DGifCloseFile(gif, &err);
}

TEST_CASE("viewer: x0-hat after the first step differs from x0-hat after the last") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot first = fx.view("first", ViewerFixture::settings() + "--stop-at 1");
  Shot last = fx.view("last", ViewerFixture::settings() + "--stop-at 8");
  INFO(first.out << last.out);
  CHECK(first.code == 0);
  CHECK(last.code == 0);
  CHECK(first.state() == "paused");
  CHECK(first.number("steps_recorded") == 1);
  CHECK(first.number("step_shown") == 0);
  CHECK(last.number("step_shown") == 7);
  CHECK(stddev(first.item("x0")) > 3);
  CHECK(mean_abs_diff(first.item("x0"), last.item("x0")) > 10);
  CHECK(mean_abs_diff(first.item("xt"), last.item("xt")) > 10);
}

TEST_CASE("viewer: the timeline scrubbed to step k shows step k, and cancel at step k leaves the UI idle") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot paused = fx.view("paused3", ViewerFixture::settings() + "--stop-at 3");
  Shot scrubbed = fx.view("scrub3", ViewerFixture::settings() + "--scrub 3");
  Shot cancelled = fx.view("cancel3", ViewerFixture::settings() + "--cancel-at 3");
  INFO(paused.out << scrubbed.out << cancelled.out);
  for (const Shot* s : {&paused, &scrubbed, &cancelled}) {
    CHECK(s->code == 0);
    CHECK(no_validation_messages(s->out));
    CHECK(s->number("step_shown") == 2);
  }
  CHECK(scrubbed.state() == "done");
  CHECK(scrubbed.number("steps_recorded") == 8);
  CHECK_FALSE(scrubbed.flag("decoded_shown"));
  // The same step's previews, whether reached live or by scrubbing back after the run.
  CHECK(mean_abs_diff(scrubbed.item("x0"), paused.item("x0")) == 0.0);
  CHECK(mean_abs_diff(scrubbed.item("xt"), paused.item("xt")) == 0.0);
  // Cancelled after step 3: idle (Generate available again), the three steps still on the timeline.
  CHECK(cancelled.state() == "cancelled");
  CHECK(cancelled.flag("ui_idle"));
  CHECK(cancelled.number("steps_recorded") == 3);
  CHECK(mean_abs_diff(cancelled.item("x0"), paused.item("x0")) == 0.0);
}

TEST_CASE("viewer: a model that fails to load shows the error panel and the window stays up") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot s = fx.view("error", "-m " + shell_quote(fx.path("missing.safetensors")));
  INFO(s.out);
  CHECK(s.code == 1);
  CHECK(no_validation_messages(s.out));
  CHECK(s.text("error").find("missing.safetensors") != std::string::npos);
  const Json& r = at(s.layout, "error_panel");
  const int x0 = rect_at(r, 0), y0 = rect_at(r, 1), x1 = rect_at(r, 2);
  REQUIRE(x1 > x0 + 100);
  // The panel's title bar is red.
  int red = 0, total = 0;
  for (int x = x0 + 10; x < x1 - 10; x += 4) {
    const uint8_t* p = s.image.at(x, y0 + 4);
    red += p[0] > 150 && p[1] < 60 && p[2] < 60;
    ++total;
  }
  CHECK(red > total * 0.6);
}

TEST_CASE("viewer: closing the window mid-generation cancels cleanly, with nothing leaked") {
  NEED_VIEWER();
  ViewerFixture fx;
  auto r = vksd::test::run_vksd("view " + ViewerFixture::settings() + "--close-at 2");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(no_validation_messages(r.out));
  CHECK(r.out.find("error") == std::string::npos);
}

TEST_CASE("viewer: headless flags are checked before any window opens") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  struct Bad {
    const char* args;
    const char* says;
  };
  for (const Bad& b : {Bad{"--stop-at 3 -p x", "--screenshot"}, Bad{"--screenshot a.png --stop-at 0 -p x", "counts steps from 1"},
                       Bad{"--screenshot a.png --steps 4 --scrub 9 -p x", "beyond --steps"},
                       Bad{"--screenshot a.png --stop-at 2", "need a prompt"}, Bad{"--preview fast", "linear or vae"},
                       Bad{"--window 10x10", "--window"}, Bad{"--sampler nope", "nope"}, Bad{"--bogus", "unknown option"}}) {
    auto r = vksd::test::run_vksd(std::string("view ") + b.args, "env -u DISPLAY");
    INFO(b.args << "\n" << r.out);
    CHECK(r.code != 0);
    CHECK(r.out.find(b.says) != std::string::npos);
  }
}

TEST_CASE("viewer: inpainting from the command line's init image and mask equals vksd generate's, and the VAE preview shows") {
  NEED_VIEWER();
  ViewerFixture fx;
  // An init image (a first generation) and a mask repainting the left half.
  auto base = vksd::test::run_vksd("generate " + ViewerFixture::settings() + "-o " + shell_quote(fx.path("init.png")));
  REQUIRE(base.code == 0);
  Image mask(64, 64, 1);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 32; ++x) *mask.at(x, y) = 255;
  vksd::write_png(fx.path("mask.png"), mask);
  const std::string i2i = "-p 'green apple' --steps 8 --seed 9 --sampler euler --cfg-scale 5 --strength 0.6 --init-img " +
                          shell_quote(fx.path("init.png")) + " --mask " + shell_quote(fx.path("mask.png")) + " ";
  auto gen = vksd::test::run_vksd("generate " + i2i + "-o " + shell_quote(fx.path("gen.png")));
  INFO(gen.out);
  REQUIRE(gen.code == 0);
  Shot s = fx.view("inpaint", i2i);
  INFO(s.out);
  CHECK(s.code == 0);
  CHECK(no_validation_messages(s.out));
  CHECK(s.state() == "done");
  CHECK(s.number("steps_recorded") == 4);  // strength 0.6 of 8 steps
  // The init image with the mask over it is on the canvas: its right half is the init image.
  const Image init = vksd::read_image(fx.path("init.png"), 3);
  Image shown = crop(s.image, at(s.layout, "mask_canvas"));
  REQUIRE(shown.width >= 64);
  const int z = shown.width / 64;
  int equal = 0;
  for (int y = 0; y < 64; ++y)
    for (int x = 40; x < 64; ++x) equal += std::equal(init.at(x, y), init.at(x, y) + 3, shown.at(x * z + z / 2, y * z + z / 2));
  CHECK(equal == 64 * 24);
  CHECK(mean_abs_diff(s.item("x0"), vksd::read_image(fx.path("gen.png"), 3)) == 0.0);

  // The VAE decoder as the step preview: paused at step 4 of 8 with one decode every 2 steps.
  Shot v = fx.view("vae", ViewerFixture::settings() + "--preview vae --vae-every 2 --stop-at 4");
  INFO(v.out);
  CHECK(v.code == 0);
  CHECK(v.state() == "paused");
  CHECK(v.flag("decoded_shown"));
  CHECK(stddev(v.item("x0")) > 10);
}
