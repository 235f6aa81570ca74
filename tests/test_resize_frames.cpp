// Step frames written as the run goes (--save-steps, --preview), the labelled contact sheet with
// every N-th step, img2img step numbers that agree between JSON and file names, A1111's resize
// modes for init images and masks of another size, and --json errors as JSON events.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

#include "runtime/diffusion/step_frames.h"
#include "runtime/diffusion/preview.h"
#include "runtime/io/image_io.h"
#include "runtime/io/image_resize.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using vksd::test::run_vksd;
using vksd::test::shell_quote;

namespace {

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("vksd_frames_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(dir); }
  ~TempDir() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

const std::string kEnv = "env -u VKSD_MODEL -u VKSD_VOCAB";

vksd::Image two_colour(int w, int h) {  // left half red, right half blue, top 6 rows green
  vksd::Image im(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = im.at(x, y);
      if (y < 6) p[0] = 0, p[1] = 255, p[2] = 0;
      else if (x < w / 2) p[0] = 255, p[1] = 0, p[2] = 0;
      else p[0] = 0, p[1] = 0, p[2] = 255;
    }
  return im;
}

bool is(const vksd::Image& im, int x, int y, int r, int g, int b) {
  const uint8_t* p = im.at(x, y);
  return std::abs(p[0] - r) < 8 && std::abs(p[1] - g) < 8 && std::abs(p[2] - b) < 8;
}

}  // namespace

TEST_CASE("resize: A1111's just resize, crop and resize, resize and fill") {
  const vksd::Image src = two_colour(100, 50);
  auto j = vksd::fit_image(src, 40, 40, vksd::ResizeMode::JustResize);
  CHECK(j.width == 40);
  CHECK(j.height == 40);
  CHECK(is(j, 5, 20, 255, 0, 0));
  CHECK(is(j, 35, 20, 0, 0, 255));
  // Crop: the 100x50 picture already covers 50x50 at its own scale; the centre 50 columns stay:
  // 25 red, 25 blue, the green top rows kept.
  auto c = vksd::fit_image(src, 50, 50, vksd::ResizeMode::CropAndResize);
  CHECK(c.width == 50);
  CHECK(is(c, 10, 25, 255, 0, 0));
  CHECK(is(c, 40, 25, 0, 0, 255));
  CHECK(is(c, 10, 0, 0, 255, 0));
  // Fill: scaled to 50x25 and centred at y = 25 - 12 = 13; the band above is the picture's top
  // row (green) stretched, the band below its bottom row (red | blue).
  auto f = vksd::fit_image(src, 50, 50, vksd::ResizeMode::ResizeAndFill);
  CHECK(is(f, 10, 5, 0, 255, 0));
  CHECK(is(f, 10, 30, 255, 0, 0));
  CHECK(is(f, 40, 30, 0, 0, 255));
  CHECK(is(f, 5, 47, 255, 0, 0));
  CHECK(is(f, 45, 47, 0, 0, 255));
  // The taller case: bands left and right.
  auto t = vksd::fit_image(two_colour(50, 100), 100, 50, vksd::ResizeMode::ResizeAndFill);
  CHECK(is(t, 2, 30, 255, 0, 0));   // left band = leftmost column (red)
  CHECK(is(t, 97, 30, 0, 0, 255));  // right band = rightmost column (blue)
  CHECK(vksd::parse_resize_mode("1") == vksd::ResizeMode::CropAndResize);
  CHECK(vksd::parse_resize_mode("fill") == vksd::ResizeMode::ResizeAndFill);
  CHECK_THROWS(vksd::parse_resize_mode("squash"));
}

TEST_CASE("step frames: each step is on disk when its event returns, every N-th kept, preview rewritten") {
  TempDir t;
  vksd::StepFrameOptions o;
  o.dir = t.path("steps");
  o.every = 2;
  o.preview = t.path("preview.png");
  o.preview_interval = 3;
  vksd::StepFrames frames(o, vksd::LatentRgbMap::sd1(), 16, 16);
  std::vector<double> x(4 * 2 * 2, 0.5), x0(4 * 2 * 2, -0.25);
  for (int s = 1; s <= 5; ++s) {
    vksd::StepEvent e;
    e.index = s - 1, e.count = 5, e.t = 1000 - 200 * s, e.sigma = 10.0 / s, e.channels = 4, e.height = 2, e.width = 2;
    e.x = &x, e.denoised = &x0, e.x_signal = 1, e.x_noise = 10.0 / s;
    frames.on_step(e, s, 5);
    char name[40];
    std::snprintf(name, sizeof name, "step_%03d_xt.png", s);
    CHECK_MESSAGE(fs::exists(fs::path(o.dir) / name) == (s % 2 == 1), name);  // 1, 3, 5 (the last)
    CHECK(fs::exists(o.preview) == (s >= 3));
  }
  CHECK(fs::exists(fs::path(o.dir) / "step_005_x0.png"));
}

TEST_CASE("contact sheet: a labelled column per kept step, rows x_t and x0") {
  std::vector<vksd::Image> xt(3, vksd::Image(32, 32, 3)), x0(3, vksd::Image(32, 32, 3));
  std::vector<std::vector<std::string>> labels = {{"step 1", "t 999"}, {"step 3", "t 500"}, {"step 5", "t 1"}};
  auto sheet = vksd::labelled_contact_sheet(xt, x0, labels);
  const int left = 22, pad = 2, top = 2 * 9 + pad;
  CHECK(sheet.width == left + 3 * (32 + pad));
  CHECK(sheet.height == top + 2 * (32 + pad) + pad);
  // Each column's label strip has ink, and different labels give different strips.
  auto strip = [&](int c) {
    std::vector<uint8_t> v;
    for (int y = 0; y < top; ++y)
      for (int x = 0; x < 32; ++x) v.push_back(sheet.at(left + c * (32 + pad) + x, y)[0]);
    return v;
  };
  for (int c = 0; c < 3; ++c) {
    auto s = strip(c);
    CHECK(std::count(s.begin(), s.end(), (uint8_t)230) > 20);
  }
  CHECK(strip(0) != strip(1));
  CHECK(strip(1) != strip(2));
  // The row names sit left of the tiles.
  int ink = 0;
  for (int y = top; y < sheet.height; ++y)
    for (int x = 0; x < left - pad; ++x) ink += sheet.at(x, y)[0] == 230;
  CHECK(ink > 20);
}

TEST_CASE("cli generate: frames, preview, img2img step numbers, resized init image and mask, JSON errors") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  TempDir t;
  const std::string steps = t.path("steps");
  auto r = run_vksd("generate -p 'a yellow face' --steps 5 --seed 3 --save-steps " + shell_quote(steps) +
                        " --save-steps-every 2 --preview " + shell_quote(t.path("p.png")) + " --preview-interval 2 -o " +
                        shell_quote(t.path("a.png")),
                    kEnv);
  INFO(r.out);
  REQUIRE(r.code == 0);
  for (const char* f : {"step_001_x0.png", "step_003_xt.png", "step_005_x0.png", "contact_sheet.png"})
    CHECK_MESSAGE(fs::exists(fs::path(steps) / f), f);
  CHECK(!fs::exists(fs::path(steps) / "step_002_x0.png"));
  CHECK(fs::exists(t.path("p.png")));
  auto sheet = vksd::read_image((fs::path(steps) / "contact_sheet.png").string());
  CHECK(sheet.width == 22 + 3 * (64 + 2));  // 3 columns: steps 1, 3, 5

  // img2img from a 100x60 picture at 64x64, crop mode; a 30x30 mask, fitted the same way.
  vksd::write_png(t.path("init.png"), two_colour(100, 60));
  vksd::Image mask(30, 30, 1);
  std::fill(mask.pixels.begin(), mask.pixels.end(), (uint8_t)255);
  vksd::write_png(t.path("mask.png"), mask);
  const std::string steps2 = t.path("steps2");
  r = run_vksd("generate --json -p 'a yellow face' --steps 4 --strength 0.5 -W 64 -H 64 --resize-mode crop --init-img " +
                   shell_quote(t.path("init.png")) + " --mask " + shell_quote(t.path("mask.png")) + " --save-steps " +
                   shell_quote(steps2) + " -o " + shell_quote(t.path("b.png")),
               kEnv);
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("\"step\":2,\"steps\":2") != std::string::npos);
  CHECK(fs::exists(fs::path(steps2) / "step_001_x0.png"));
  CHECK(fs::exists(fs::path(steps2) / "step_002_x0.png"));
  CHECK(!fs::exists(fs::path(steps2) / "step_003_x0.png"));
  CHECK(vksd::read_image(t.path("b.png")).width == 64);

  // --json: an error is a JSON event on stdout too.
  r = run_vksd("generate --json -p x --steps 0 -o " + shell_quote(t.path("c.png")), kEnv);
  CHECK(r.code != 0);
  CHECK(r.out.find("{\"event\":\"error\",\"message\":\"--steps must be at least 1") != std::string::npos);
}
