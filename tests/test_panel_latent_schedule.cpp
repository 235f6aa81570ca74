// The "Inside the latent" and "The noise schedule" teaching panels: the numbers the schedule panel
// plots against the schedule code's own, and both panels as a student sees them (Xvfb
// screenshots of `vksd view`, asserting on pixels and on the facts the panels report).
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <set>

#include "runtime/diffusion/preview.h"
#include "runtime/diffusion/samplers.h"
#include "runtime/diffusion/schedule.h"
#include "tests/viewer_harness.h"
#include "viewer/panels/schedule_series.h"

using namespace vksd::test;

namespace {

const std::string kRun = "-p 'red apple' --steps 8 --seed 7 --sampler euler --cfg-scale 5 --window 1600x1000 ";

const Json& panel(const Shot& s, const char* name) { return at(at(s.layout, "panels"), name); }
double fact(const Shot& s, const char* name, const char* key) { return at(panel(s, name), key).as_number(); }
int rect_width(const Json& r) { return rect_at(r, 2) - rect_at(r, 0); }

// The colours of the diverging map's table.
std::set<std::array<uint8_t, 3>> diverging_colours() {
  std::set<std::array<uint8_t, 3>> r;
  for (int i = 0; i < 256; ++i) {
    std::array<uint8_t, 3> c;
    vksd::heatmap_color((float)i / 255.f, vksd::ColorMap::Diverging, c.data());
    r.insert(c);
  }
  return r;
}

// Heatmap row `key` of the latent panel: channel c's w x h latent pixels, sampled at their centres
// (the panel draws each channel as a square of cell_px with gap_px between channels).
Image latent_channel(const Shot& s, const char* key, int c) {
  const Json& r = at(panel(s, "latent"), key);
  const double cell = fact(s, "latent", "cell_px"), gap = fact(s, "latent", "gap_px");
  const int w = (int)at(panel(s, "latent"), "latent_size").as_array().at(0).as_number();
  const int h = (int)at(panel(s, "latent"), "latent_size").as_array().at(1).as_number();
  const double x0 = rect_at(r, 0) + c * (cell + gap), y0 = rect_at(r, 1), ch = cell * h / w;
  Image out(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const int sx = (int)(x0 + (x + 0.5) * cell / w), sy = (int)(y0 + (y + 0.5) * ch / h);
      REQUIRE(sx < s.image.width);
      REQUIRE(sy < s.image.height);
      std::copy(s.image.at(sx, sy), s.image.at(sx, sy) + 3, out.at(x, y));
    }
  return out;
}

// Pixels of the marker's yellow in column x (framebuffer) inside rect r, the most of x-2 .. x+2.
int yellow_in_column(const Image& im, const Json& r, double xf) {
  int best = 0;
  for (int x = (int)std::lround(xf) - 2; x <= (int)std::lround(xf) + 2; ++x) {
    int n = 0;
    for (int y = rect_at(r, 1); y < std::min(rect_at(r, 3), im.height); ++y) {
      const uint8_t* p = im.at(x, y);
      n += p[0] > 200 && p[1] > 170 && p[2] < 140;
    }
    best = std::max(best, n);
  }
  return best;
}

}  // namespace

TEST_CASE("panel schedule: the series it plots are the schedule's own abar, sigma and SNR, its ticks the sampler's timesteps") {
  for (const char* kind : {"scaled_linear", "linear"}) {
    vksd::ScheduleConfig cfg;
    cfg.beta_schedule = kind;
    cfg.num_train_timesteps = std::string(kind) == "linear" ? 500 : 1000;
    const vksd::NoiseSchedule s(cfg);
    const auto series = vksd::view::schedule_series(s);
    const int T = s.num_timesteps();
    REQUIRE((int)series.t.size() == T);
    REQUIRE(series.alpha_bar.size() == series.t.size());
    REQUIRE(series.sigma.size() == series.t.size());
    REQUIRE(series.snr.size() == series.t.size());
    for (int t = 0; t < T; ++t) {
      INFO(kind << " t = " << t);
      const double a = s.alphas_cumprod(t);
      CHECK(series.t[(size_t)t] == t);
      CHECK(series.alpha_bar[(size_t)t] == a);
      CHECK(series.sigma[(size_t)t] == s.sigma(t));
      CHECK(series.sigma[(size_t)t] == doctest::Approx(std::sqrt((1 - a) / a)).epsilon(1e-12));
      CHECK(series.snr[(size_t)t] == doctest::Approx(1 / (s.sigma(t) * s.sigma(t))).epsilon(1e-12));
      CHECK(series.signal[(size_t)t] * series.signal[(size_t)t] + series.noise[(size_t)t] * series.noise[(size_t)t] ==
            doctest::Approx(1).epsilon(1e-12));
      if (t > 0) CHECK(series.alpha_bar[(size_t)t] < series.alpha_bar[(size_t)t - 1]);
    }
    // The ticks: what the runtime's samplers visit, step by step.
    for (const std::string& name : vksd::sampler_cli_names())
      for (int steps : {1, 8, 20, 50}) {
        INFO(kind << " " << name << " " << steps << " steps");
        const auto k = vksd::parse_sampler(name);
        auto sampler = vksd::Sampler::create(k, s, steps);
        const auto v = vksd::view::sampler_visits(*sampler);
        REQUIRE((int)v.t.size() == sampler->steps());
        for (int i = 0; i < sampler->steps(); ++i) {
          CHECK(v.t[(size_t)i] == sampler->timestep(i));
          CHECK(v.sigma[(size_t)i] == sampler->sigma_at(i));
          CHECK(v.t[(size_t)i] >= 0);
          CHECK(v.t[(size_t)i] <= T - 1);
          if (i > 0) CHECK(v.t[(size_t)i] < v.t[(size_t)i - 1]);  // from noise towards the picture
        }
      }
    // DDIM visits LDM's uniform timesteps, last first.
    const auto ddim = vksd::view::sampler_visits(*vksd::Sampler::create(vksd::SamplerKind::DDIM, s, 20));
    const auto want = vksd::ddim_timesteps(20, T);
    REQUIRE(ddim.t.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) CHECK(ddim.t[i] == want[want.size() - 1 - i]);
  }
  CHECK(vksd::view::alpha_bar_of_sigma(0) == 1);
  CHECK(vksd::view::alpha_bar_of_sigma(std::sqrt(3.0)) == doctest::Approx(0.25));
}

TEST_CASE("panel schedule: the marker follows the shown step, the ticks follow the controls before a run") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot s2 = fx.view("sched2", kRun + "--stop-at 2 --panel schedule");
  Shot s6 = fx.view("sched6", kRun + "--stop-at 6 --panel schedule");
  // No prompt: nothing is generated; the panel shows what ddim with 20 steps would visit.
  Shot idle = fx.view("sched_idle", "--steps 20 --sampler ddim --window 1600x1000 --panel schedule");
  INFO(s2.out << s6.out << idle.out);
  for (const Shot* s : {&s2, &s6, &idle}) {
    CHECK(s->code == 0);
    CHECK(no_validation_messages(s->out));
    CHECK(stddev(crop(s->image, at(panel(*s, "schedule"), "rect"))) > 10);
  }
  // The step on screen, from the run's records: euler's 2nd and 6th timesteps of 8.
  const vksd::NoiseSchedule sched{vksd::ScheduleConfig{}};
  const auto euler = vksd::view::sampler_visits(*vksd::Sampler::create(vksd::SamplerKind::Euler, sched, 8));
  CHECK(at(panel(s2, "schedule"), "from_run").as_bool());
  CHECK(fact(s2, "schedule", "step") == 1);
  CHECK(fact(s6, "schedule", "step") == 5);
  CHECK(fact(s2, "schedule", "t") == doctest::Approx(euler.t[1]).epsilon(1e-3));
  CHECK(fact(s6, "schedule", "t") == doctest::Approx(euler.t[5]).epsilon(1e-3));
  CHECK(fact(s2, "schedule", "ticks") == 8);
  // The marker moved left (smaller t) by the plot's share of the t axis, and it is drawn there.
  const Json& plot = at(panel(s2, "schedule"), "plot");
  const double x2 = fact(s2, "schedule", "marker_x"), x6 = fact(s6, "schedule", "marker_x");
  CHECK(x6 < x2 - 50);
  CHECK(x2 > rect_at(plot, 0));
  CHECK(x2 < rect_at(plot, 2));
  CHECK(yellow_in_column(s2.image, plot, x2) > 40);
  CHECK(yellow_in_column(s6.image, at(panel(s6, "schedule"), "plot"), x6) > 40);
  CHECK(yellow_in_column(s2.image, plot, x6) < 15);
  CHECK(yellow_in_column(s6.image, at(panel(s6, "schedule"), "plot"), x2) < 15);
  // Before a run: the controls' sampler and steps, the marker at its first timestep.
  CHECK_FALSE(at(panel(idle, "schedule"), "from_run").as_bool());
  CHECK(fact(idle, "schedule", "ticks") == 20);
  CHECK(fact(idle, "schedule", "t") == vksd::ddim_timesteps(20, 1000).back());
  CHECK(rect_width(at(panel(idle, "schedule"), "plot")) > 300);
}

TEST_CASE("panel latent: x_t, x0-hat and the three noise predictions as heatmaps that change with the step") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot a = fx.view("latent3", kRun + "--stop-at 3 --panel latent");
  Shot b = fx.view("latent6", kRun + "--stop-at 6 --panel latent");
  Shot u = fx.view("latent_nocfg", "-p 'red apple' --steps 8 --seed 7 --sampler euler --cfg-scale 1 --window 1600x1000 --stop-at 3 --panel latent");
  INFO(a.out << b.out << u.out);
  const auto table = diverging_colours();
  for (const Shot* s : {&a, &b, &u}) {
    CHECK(s->code == 0);
    CHECK(no_validation_messages(s->out));
    CHECK(stddev(crop(s->image, at(panel(*s, "latent"), "rect"))) > 10);
    CHECK(fact(*s, "latent", "channels") == 4);
    CHECK(fact(*s, "latent", "cell_px") >= 32);
    for (const char* key : {"xt", "x0", "eps"}) {
      INFO(key);
      REQUIRE(rect_width(at(panel(*s, "latent"), key)) > 100);
      // Every latent pixel is a colour of the diverging map, and the map's range is used.
      int blue = 0, red = 0, in_table = 0, total = 0;
      for (int c = 0; c < 4; ++c) {
        const Image ch = latent_channel(*s, key, c);
        for (int y = 0; y < ch.height; ++y)
          for (int x = 0; x < ch.width; ++x) {
            const uint8_t* p = ch.at(x, y);
            in_table += table.count({p[0], p[1], p[2]}) > 0;
            blue += p[2] > p[0] + 40, red += p[0] > p[2] + 40;
            ++total;
          }
      }
      CHECK(in_table == total);
      CHECK(blue > total / 20);
      CHECK(red > total / 20);
    }
  }
  // Guidance: the prompt's and the negative prompt's predictions too; without it only one.
  CHECK(at(panel(a, "latent"), "guided").as_bool());
  CHECK(rect_width(at(panel(a, "latent"), "eps_cond")) > 100);
  CHECK(rect_width(at(panel(a, "latent"), "eps_uncond")) > 100);
  CHECK_FALSE(at(panel(u, "latent"), "guided").as_bool());
  CHECK(rect_width(at(panel(u, "latent"), "eps_cond")) == 0);
  CHECK(rect_width(at(panel(u, "latent"), "eps_uncond")) == 0);
  // The step on screen, and its heatmaps differ from another step's.
  CHECK(fact(a, "latent", "step") == 2);
  CHECK(fact(b, "latent", "step") == 5);
  for (const char* key : {"xt", "x0", "eps"}) {
    INFO(key);
    double d = 0;
    for (int c = 0; c < 4; ++c) d += mean_abs_diff(latent_channel(a, key, c), latent_channel(b, key, c));
    CHECK(d / 4 > 5);
  }
  // The prompt's and the negative prompt's noise predictions differ (that is what guidance amplifies).
  double d = 0;
  for (int c = 0; c < 4; ++c) d += mean_abs_diff(latent_channel(a, "eps_cond", c), latent_channel(a, "eps_uncond", c));
  CHECK(d / 4 > 1);
  // The statistics plot marks the shown step, further right at step 6.
  CHECK(fact(b, "latent", "marker_x") > fact(a, "latent", "marker_x") + 30);
  CHECK(yellow_in_column(a.image, at(panel(a, "latent"), "stats_plot"), fact(a, "latent", "marker_x")) > 40);
}
