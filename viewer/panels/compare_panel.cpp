// "Two prompts, same seed": the last run (prompt A) and a run of prompt B with the same seed and
// settings, their x̂0 timelines side by side and their difference, step by step — where in the
// denoising the two pictures part ways.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>

#include "runtime/gpu/context.h"
#include "viewer/panels/latent_images.h"
#include "viewer/panels/panel.h"
#include "viewer/panels/plot.h"
#include "viewer/window.h"

namespace vksd::view {

namespace {

using Records = std::vector<std::shared_ptr<const StepRecord>>;

// Per latent pixel: the distance between the two x̂0, over the channels.
std::vector<float> distance_map(const StepRecord& a, const StepRecord& b) {
  const size_t plane = (size_t)a.height * a.width;
  std::vector<float> d(plane, 0.f);
  for (int c = 0; c < a.channels; ++c)
    for (size_t i = 0; i < plane; ++i) {
      const float v = a.denoised[c * plane + i] - b.denoised[c * plane + i];
      d[i] += v * v;
    }
  for (auto& v : d) v = std::sqrt(v);
  return d;
}

class ComparePanel : public Panel {
 public:
  ComparePanel() { default_size = ImVec2(760, 640); }
  const char* name() const override { return "compare"; }
  const char* title() const override { return "Two prompts, same seed"; }

  bool set(const std::string& key, const std::string& value) override {
    if (key == "prompt_b") prompt_b_ = value;
    else if (key == "run") auto_run_ = value == "1" || value == "true";
    else return false;
    return true;
  }
  bool busy() const override { return phase_ == Phase::RunningB || (auto_run_ && phase_ == Phase::Idle); }

  void update(PanelFrame& f) override {
    if (!f.job || !f.pipe) return;
    const JobState st = f.job->state();
    if (phase_ == Phase::RunningB && st != JobState::Running && st != JobState::Paused) {
      if (st == JobState::Done) {
        b_ = records(*f.job);
        phase_ = Phase::Ready;
        finish_scale();
      } else {
        phase_ = Phase::Idle;  // cancelled or failed: nothing to compare
        auto_run_ = false;
      }
    }
    if (auto_run_ && phase_ == Phase::Idle && (st == JobState::Failed || st == JobState::Cancelled))
      auto_run_ = false;  // no run A to compare with: not busy (a headless shot must not wait forever)
    if (auto_run_ && phase_ == Phase::Idle && st == JobState::Done && f.job->steps_recorded() > 0) start(f);
    if (phase_ != Phase::Ready || a_.empty() || b_.empty()) return;
    const int n = (int)std::min(a_.size(), b_.size());
    const int k = std::clamp(f.shown_step, 0, n - 1);
    const StepRecord& a = *a_[(size_t)k];
    const StepRecord& b = *b_[(size_t)k];
    images_.ensure(f.ctx, f.renderer, f.window, a.channels, a.height, a.width);
    if (!diff_ || diff_h_ != a.height || diff_w_ != a.width) {
      f.window.wait_frames();
      diff_tex_.reset();
      diff_ = std::make_unique<HeatmapPreview>(f.ctx, a.height, a.width, Window::kFramesInFlight);
      diff_tex_ = std::make_unique<Texture>(f.ctx, f.renderer, a.width, a.height, true);
      diff_h_ = a.height, diff_w_ = a.width;
      key_ = -1;
    }
    if (key_ == k) return;
    const auto& map = f.pipe->config().preview;
    images_.show(f.cmd, f.frame_slot, 0, a.denoised, map);
    images_.show(f.cmd, f.frame_slot, 1, b.denoised, map);
    diff_->record(f.cmd, f.frame_slot, distance_map(a, b).data(), 0.f, diff_max_, ColorMap::Viridis);
    diff_tex_->record_copy_from(f.cmd, diff_->output_buffer(), diff_->output_offset(f.frame_slot));
    key_ = k;
  }

  void draw(PanelFrame& f) override {
    explanation(
        "Both runs start from the same noise (the same seed) and use the same sampler, steps and guidance; only the "
        "prompt differs. At every step each run's x0-hat is the clean image its UNet predicts; the third picture is "
        "how far apart the two predictions are at each latent pixel, |x0_A - x0_B| over the 4 channels, on one colour "
        "scale for all steps (dark = the same, yellow = the largest difference of the run). The plot below shows the "
        "total distance per step: early steps decide the layout and colours, late steps only details, so a word "
        "that changes the subject shows up early.");
    ImGui::SetNextItemWidth(-240);
    ImGui::InputTextWithHint("##b", "prompt B (e.g. the same prompt with one word changed)", &prompt_b_);
    ImGui::SameLine();
    const bool can = f.actions && f.actions->can_run() && f.job && f.job->state() == JobState::Done && !prompt_b_.empty();
    ImGui::BeginDisabled(!can);
    if (ImGui::Button("Compare last run with B")) start(f);
    ImGui::EndDisabled();
    if (phase_ == Phase::RunningB) ImGui::TextColored(ImVec4(1, 0.8f, 0.3f, 1), "running prompt B ...");
    if (phase_ != Phase::Ready) {
      if (phase_ == Phase::Idle) ImGui::TextWrapped("Generate an image (prompt A), type prompt B, then compare.");
      return;
    }
    ImGui::Text("A: %s", a_params_.prompt.c_str());
    ImGui::Text("B: %s   (seed %llu, both)", prompt_b_run_.c_str(), (unsigned long long)a_params_.seed);
    const int n = (int)std::min(a_.size(), b_.size());
    const int k = std::clamp(f.shown_step, 0, n - 1);
    const float avail = ImGui::GetContentRegionAvail().x;
    const float side = std::max(64.f, std::min((avail - 2 * ImGui::GetStyle().ItemSpacing.x) / 3.f, 240.f));
    const ImVec2 size(side, side * (float)a_[0]->height / (float)a_[0]->width);
    char cap[64];
    std::snprintf(cap, sizeof cap, "A, step %d", a_[(size_t)k]->index + 1);
    rects_[0] = images_.draw(0, cap, size);
    ImGui::SameLine();
    std::snprintf(cap, sizeof cap, "B, step %d", b_[(size_t)k]->index + 1);
    rects_[1] = images_.draw(1, cap, size);
    ImGui::SameLine();
    ImGui::BeginGroup();
    ImGui::TextUnformatted("|A - B|");
    if (diff_tex_) ImGui::Image(diff_tex_->id(), size);
    rects_[2] = item_fb_rect();
    ImGui::EndGroup();
    {
      std::vector<double> xs, ys;
      for (size_t i = 0; i < norms_.size(); ++i) xs.push_back((double)i + 1), ys.push_back(norms_[i]);
      PlotArea plot("distance between x0-hat A and B, per step", ImVec2(ImGui::GetContentRegionAvail().x, 130),
                    {1.0, std::max(2.0, (double)norms_.size()), false, "step"}, {0.0, std::max(1e-6, peak_ * 1.1), false, ""});
      plot.line(xs, ys, plot_colors::kBlue);
      plot.vline(k + 1.0, plot_colors::kMarker, 2.f);
      plot.dot(k + 1.0, norms_[(size_t)k], plot_colors::kMarker);
    }
    ImGui::Text("step %d: distance %.2f (largest %.2f at step %d)", k + 1, norms_[(size_t)k], peak_, peak_step_ + 1);
  }

  void facts(PanelFacts& out) const override {
    out.push_back({"a_steps", std::to_string(a_.size())});
    out.push_back({"b_steps", std::to_string(b_.size())});
    out.push_back({"a", json_rect(rects_[0])});
    out.push_back({"b", json_rect(rects_[1])});
    out.push_back({"diff", json_rect(rects_[2])});
  }

 private:
  enum class Phase { Idle, RunningB, Ready };

  static Records records(GenerationJob& job) {
    Records r;
    for (int k = 0; k < job.steps_recorded(); ++k) r.push_back(job.record_ptr(k));
    return r;
  }

  void start(PanelFrame& f) {
    if (prompt_b_.empty()) {
      auto_run_ = false;
      return;
    }
    a_ = records(*f.job);
    a_params_ = f.job->params();
    GenerateParams b = a_params_;
    b.prompt = prompt_b_;
    prompt_b_run_ = prompt_b_;
    b_.clear();
    auto_run_ = false;
    if (f.actions->run(b, {})) phase_ = Phase::RunningB;
  }

  // One colour scale for the whole comparison, and the per-step distances for the plot.
  void finish_scale() {
    const size_t n = std::min(a_.size(), b_.size());
    norms_.assign(n, 0.f);
    diff_max_ = 1e-6f, peak_ = 0, peak_step_ = 0;
    for (size_t k = 0; k < n; ++k) {
      double sum = 0;
      for (float v : distance_map(*a_[k], *b_[k])) {
        sum += (double)v * v;
        diff_max_ = std::max(diff_max_, v);
      }
      norms_[k] = (float)std::sqrt(sum);
      if (norms_[k] > peak_) peak_ = norms_[k], peak_step_ = (int)k;
    }
    key_ = -1;
  }

  std::string prompt_b_, prompt_b_run_;
  bool auto_run_ = false;
  Phase phase_ = Phase::Idle;
  Records a_, b_;
  GenerateParams a_params_;
  LatentImages images_{2};
  std::unique_ptr<HeatmapPreview> diff_;
  std::unique_ptr<Texture> diff_tex_;
  int diff_h_ = 0, diff_w_ = 0, key_ = -1;
  float diff_max_ = 1, peak_ = 0;
  int peak_step_ = 0;
  std::vector<float> norms_;
  ImVec4 rects_[3]{};
};

}  // namespace

std::unique_ptr<Panel> make_compare_panel() { return std::make_unique<ComparePanel>(); }

}  // namespace vksd::view
