// "The noise schedule": abar_t, sigma_t and the signal-to-noise ratio over the training timesteps
// of the loaded model's schedule, the timesteps the sampler chosen in the controls visits (ticks:
// they follow the controls before anything is generated), and the step on screen (a marker, from
// the job's record of that step), with x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps filled in.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "viewer/panels/panel.h"
#include "viewer/panels/plot.h"
#include "viewer/panels/schedule_series.h"

namespace vksd::view {

ScheduleSeries schedule_series(const NoiseSchedule& s) {
  ScheduleSeries r;
  const int T = s.num_timesteps();
  for (int t = 0; t < T; ++t) {
    const double a = s.alphas_cumprod(t);
    r.t.push_back(t);
    r.alpha_bar.push_back(a);
    r.sigma.push_back(s.sigma(t));
    r.snr.push_back(a / (1 - a));
    r.signal.push_back(std::sqrt(a));
    r.noise.push_back(std::sqrt(1 - a));
  }
  return r;
}

SamplerVisits sampler_visits(const Sampler& sampler) {
  SamplerVisits r;
  for (int i = 0; i < sampler.steps(); ++i) {
    r.t.push_back(sampler.timestep(i));
    r.sigma.push_back(sampler.sigma_at(i));
  }
  return r;
}

namespace {

using namespace plot_colors;

double floor_decade(double v) { return std::pow(10.0, std::floor(std::log10(v))); }
double ceil_decade(double v) { return std::pow(10.0, std::ceil(std::log10(v))); }

class SchedulePanel : public Panel {
 public:
  SchedulePanel() { default_size = ImVec2(760, 900); }
  const char* name() const override { return "schedule"; }
  const char* title() const override { return "The noise schedule"; }

  void update(PanelFrame& f) override {
    if (!f.pipe) {
      sched_ = nullptr;
      return;
    }
    const NoiseSchedule& s = f.pipe->schedule();
    if (&s != sched_ || series_.t.size() != (size_t)s.num_timesteps()) {
      sched_ = &s;
      series_ = schedule_series(s);
      visits_kind_ = -1;
    }
    // The ticks follow the controls (sampler, steps), before anything is generated.
    // The pipeline makes the sampler, so the model's timestep spacing applies as in a run.
    const int kind = (int)f.ui_params.sampler, steps = f.ui_params.steps, spacing = (int)f.ui_params.spacing;
    if (kind != visits_kind_ || steps != visits_steps_ || spacing != visits_spacing_) {
      visits_ = {};
      try {
        visits_ = sampler_visits(*f.pipe->make_sampler(f.ui_params));
      } catch (const std::exception&) {
        // Settings no sampler accepts (e.g. 0 steps): no ticks until the controls change.
      }
      visits_kind_ = kind, visits_steps_ = steps, visits_spacing_ = spacing;
    }
    // The marker: the step on screen (from its record), else where the chosen sampler starts.
    marker_ = {};
    run_t_.clear(), run_sigma_.clear();
    if (f.job && f.shown_step >= 0) {
      auto rec = f.job->record_ptr(f.shown_step);
      marker_ = {true, rec->t, rec->sigma, rec->index, rec->count};
      const int n = f.job->steps_recorded();
      for (int k = 0; k < n; ++k) {
        auto r = f.job->record_ptr(k);
        run_t_.push_back(r->t), run_sigma_.push_back(r->sigma);
      }
      auto first = f.job->record_ptr(0);
      if (first != run_first_) {  // a new run (the pointer held keeps its address from being reused)
        run_first_ = first;
        const GenerateParams p = f.job->params();
        run_sampler_ = p.sampler, run_steps_ = p.steps;
      }
    } else if (!visits_.t.empty()) {
      marker_ = {false, visits_.t[0], visits_.sigma[0], 0, (int)visits_.t.size()};
    }
    has_marker_ = f.job && f.shown_step >= 0 ? true : !visits_.t.empty();
  }

  void draw(PanelFrame& f) override {
    marker_x_ = -1;
    if (!f.pipe || !sched_) {
      explanation("The noise schedule belongs to the model: load one to see it.");
      ImGui::TextDisabled("no model loaded");
      return;
    }
    const NoiseSchedule& s = *sched_;
    const int T = s.num_timesteps();
    char text[2048];
    std::snprintf(
        text, sizeof text,
        "Training teaches the UNet to remove noise at every noise level t = 0 .. %d. A clean latent x0 is mixed with "
        "Gaussian noise eps as\n"
        "    x_t = sqrt(abar_t)\xc2\xb7x0 + sqrt(1 - abar_t)\xc2\xb7" "eps\n"
        "abar_t (\"alpha-bar\", how much of the picture is left) is the running product of (1 - beta) over the "
        "timesteps up to t; this model's beta grows from %.5f to %.4f, so abar_t falls from %.4f at t = 0 to %.5f at "
        "t = %d. sigma_t = sqrt((1 - abar_t) / abar_t) is the noise measured against the signal (the euler and dpm++ "
        "samplers work with it), SNR = abar_t / (1 - abar_t) = 1/sigma_t\xc2\xb2 the signal's power over the noise's "
        "(log scales: both span many powers of ten).\n"
        "Generating walks the other way, from pure noise at t = %d down to t = 0, in a few big jumps: the white ticks "
        "are the timesteps the sampler chosen in the controls visits, the yellow line the step on screen.",
        T - 1, s.betas().front(), s.betas().back(), series_.alpha_bar.front(), series_.alpha_bar.back(), T - 1,
        T - 1);
    explanation(text);

    // Which steps: the controls' sampler, and (when it differs) the run on screen's.
    const char* sampler = sampler_cli_name(f.ui_params.sampler);
    std::string ts;
    for (size_t i = 0; i < visits_.t.size(); ++i) {
      if (i == 24 && visits_.t.size() > 26) {
        ts += ", ... , " + fmt_t(visits_.t.back());
        break;
      }
      ts += (i ? ", " : "") + fmt_t(visits_.t[i]);
    }
    if (visits_.t.empty()) ImGui::TextWrapped("sampler %s with %d steps: no timesteps (steps must be at least 1)", sampler, f.ui_params.steps);
    else ImGui::TextWrapped("%s, %d steps (the controls) visits t = %s", sampler, (int)visits_.t.size(), ts.c_str());
    if (marker_.from_run && (run_sampler_ != f.ui_params.sampler || run_steps_ != f.ui_params.steps))
      ImGui::TextColored(ImVec4(1.f, 0.86f, 0.3f, 1.f), "the run on screen used %s with %d steps (dots)",
                         sampler_cli_name(run_sampler_), run_steps_);

    // Three plots sharing the t axis, then the equation with this step's numbers.
    const float w = ImGui::GetContentRegionAvail().x;
    const float eq_h = ImGui::GetTextLineHeightWithSpacing() * 4.5f;
    const float ph = std::clamp((ImGui::GetContentRegionAvail().y - eq_h) / 3.f - ImGui::GetStyle().ItemSpacing.y, 120.f, 230.f);
    const PlotArea::Axis tx{0, (double)(T - 1), false, "timestep t   (generation runs right to left)"};
    const double smin = *std::min_element(series_.sigma.begin(), series_.sigma.end()),
                 smax = *std::max_element(series_.sigma.begin(), series_.sigma.end());
    const double rmin = *std::min_element(series_.snr.begin(), series_.snr.end()),
                 rmax = *std::max_element(series_.snr.begin(), series_.snr.end());
    const double ms = marker_.sigma, ma = alpha_bar_of_sigma(ms);
    {
      PlotArea p("abar_t", ImVec2(w, ph), tx, {0, 1, false, "(linear)"});
      p.legend({{"abar_t", kBlue}, {"sqrt(abar_t): weight of x0", kGreen}, {"sqrt(1 - abar_t): weight of eps", kPink}});
      decorate(p);
      p.line(series_.t, series_.signal, kGreen, 1.5f);
      p.line(series_.t, series_.noise, kPink, 1.5f);
      p.line(series_.t, series_.alpha_bar, kBlue, 2.5f);
      for (size_t k = 0; k < run_t_.size(); ++k) p.dot(run_t_[k], alpha_bar_of_sigma(run_sigma_[k]), kMarker, 2.5f);
      if (has_marker_) {
        p.dot(marker_.t, ma, kMarker, 5.f);
        p.dot(marker_.t, std::sqrt(ma), kGreen, 4.f);
        p.dot(marker_.t, std::sqrt(1 - ma), kPink, 4.f);
        marker_x_ = p.px(marker_.t) * ImGui::GetIO().DisplayFramebufferScale.x;
      }
      plot_rect_ = p.fb_rect();
    }
    {
      PlotArea p("sigma_t = sqrt((1 - abar_t) / abar_t)", ImVec2(w, ph), tx, {floor_decade(smin), ceil_decade(smax), true, "(log scale)"});
      decorate(p);
      p.hline(1, kDim, 1.f, "sigma = 1: as much noise as signal");
      p.line(series_.t, series_.sigma, kOrange, 2.5f);
      for (size_t k = 0; k < run_t_.size(); ++k) p.dot(run_t_[k], run_sigma_[k], kMarker, 2.5f);
      if (has_marker_) p.dot(marker_.t, ms, kMarker, 5.f);
    }
    {
      PlotArea p("SNR = abar_t / (1 - abar_t)", ImVec2(w, ph), tx, {floor_decade(rmin), ceil_decade(rmax), true, "(log scale)"});
      decorate(p);
      p.hline(1, kDim, 1.f, "SNR = 1");
      p.line(series_.t, series_.snr, kGreen, 2.5f);
      for (size_t k = 0; k < run_t_.size(); ++k) p.dot(run_t_[k], 1 / (run_sigma_[k] * run_sigma_[k]), kMarker, 2.5f);
      if (has_marker_) p.dot(marker_.t, 1 / (ms * ms), kMarker, 5.f);
    }

    if (!has_marker_) return;
    const ImVec4 yellow(1.f, 0.86f, 0.3f, 1.f);
    if (marker_.from_run)
      ImGui::Text("The step on screen: step %d of %d, t = %s, sigma_t = %.4g", marker_.step + 1, marker_.count,
                  fmt_t(marker_.t).c_str(), ms);
    else
      ImGui::Text("Nothing generated yet: the first step of %s, t = %s, sigma_t = %.4g", sampler, fmt_t(marker_.t).c_str(), ms);
    ImGui::TextColored(yellow, "    x_t = sqrt(abar_t)\xc2\xb7x0 + sqrt(1 - abar_t)\xc2\xb7" "eps   with abar_t = %.4g:", ma);
    ImGui::TextColored(yellow, "    x_t = %.3f\xc2\xb7x0 + %.3f\xc2\xb7" "eps        SNR = %.4g  (signal power is %.3g%% of the noise's)",
                       std::sqrt(ma), std::sqrt(1 - ma), ma / (1 - ma), 100 * ma / (1 - ma));
  }

  void release() override { run_first_.reset(), sched_ = nullptr; }

  void facts(PanelFacts& out) const override {
    char b[64];
    std::snprintf(b, sizeof b, "%.2f", marker_x_);
    out.push_back({"marker_x", b});
    std::snprintf(b, sizeof b, "%.6g", has_marker_ ? marker_.t : -1.0);
    out.push_back({"t", b});
    std::snprintf(b, sizeof b, "%.6g", has_marker_ ? marker_.sigma : -1.0);
    out.push_back({"sigma", b});
    out.push_back({"step", std::to_string(has_marker_ ? marker_.step : -1)});
    out.push_back({"from_run", marker_.from_run ? "true" : "false"});
    out.push_back({"ticks", std::to_string(visits_.t.size())});
    out.push_back({"plot", json_rect(plot_rect_)});
  }

 private:
  struct Marker {
    bool from_run = false;
    double t = 0, sigma = 0;
    int step = 0, count = 0;
  };

  static std::string fmt_t(double t) {
    char b[32];
    std::snprintf(b, sizeof b, std::abs(t - std::round(t)) < 1e-6 ? "%.0f" : "%.1f", t);
    return b;
  }

  // The sampler's timesteps as ticks (a faint line through the plot, a tick on the axis) and the
  // marker's line.
  void decorate(const PlotArea& p) const {
    for (double t : visits_.t) {
      p.vline(t, IM_COL32(200, 200, 210, 40));
      p.xtick(t, kTick, 9.f);
    }
    if (has_marker_) {
      p.vline(marker_.t, kMarker, 2.f);
      char b[48];
      std::snprintf(b, sizeof b, "t = %s", fmt_t(marker_.t).c_str());
      p.tag(marker_.t, kMarker, b);
    }
  }

  const NoiseSchedule* sched_ = nullptr;
  ScheduleSeries series_;
  SamplerVisits visits_;
  int visits_kind_ = -1, visits_steps_ = -1, visits_spacing_ = -1;
  Marker marker_;
  bool has_marker_ = false;
  std::vector<double> run_t_, run_sigma_;
  std::shared_ptr<const StepRecord> run_first_;
  SamplerKind run_sampler_ = SamplerKind::Euler;
  int run_steps_ = 0;
  float marker_x_ = -1;
  ImVec4 plot_rect_{};
};

}  // namespace

std::unique_ptr<Panel> make_schedule_panel() { return std::make_unique<SchedulePanel>(); }

}  // namespace vksd::view
