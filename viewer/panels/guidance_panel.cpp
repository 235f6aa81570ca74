// "What guidance does": at the shown step, the clean image the prompt alone predicts (eps_cond),
// the one the negative (or empty) prompt alone predicts (eps_uncond), and the guided one,
// eps = eps_uncond + s (eps_cond - eps_uncond), re-formed for any scale s from the stored
// predictions of that step (no UNet run), with "re-run from here with this guidance".
#include <cmath>
#include <cstdio>

#include "runtime/gpu/context.h"
#include "viewer/panels/latent_images.h"
#include "viewer/panels/panel.h"

namespace vksd::view {

namespace {

class GuidancePanel : public Panel {
 public:
  GuidancePanel() { default_size = ImVec2(760, 520); }
  const char* name() const override { return "guidance"; }
  const char* title() const override { return "What guidance does"; }

  bool set(const std::string& key, const std::string& value) override {
    if (key != "scale") return false;
    scale_ = std::stof(value);
    scale_from_flag_ = true;
    return true;
  }

  void update(PanelFrame& f) override {
    rec_ = nullptr;
    if (!f.job || !f.pipe || f.shown_step < 0) return;
    auto rec = f.job->record_ptr(f.shown_step);
    if (!rec || rec->eps_uncond.empty() || rec->x_in.empty()) return;
    rec_ = rec;
    const StepRecord* first = f.job->record_ptr(0).get();
    if (first != run_) {
      // A new run: the slider starts at the run's own scale (unless --panel-set fixed it).
      run_ = first;
      if (!scale_from_flag_) scale_ = (float)f.job->params().cfg_scale;
      key_step_ = -1;
    }
    images_.ensure(f.ctx, f.renderer, f.window, rec->channels, rec->height, rec->width);
    const auto& map = f.pipe->config().preview;
    if (key_step_ != f.shown_step || key_rec_ != rec.get()) {
      images_.show(f.cmd, f.frame_slot, 0, predicted_x0(rec->x_in, rec->eps_uncond, rec->sigma), map);
      images_.show(f.cmd, f.frame_slot, 1, predicted_x0(rec->x_in, rec->eps_cond, rec->sigma), map);
      key_scale_ = NAN;
    }
    if (key_scale_ != scale_ || key_step_ != f.shown_step || key_rec_ != rec.get()) {
      // The guided prediction at the slider's scale, from the stored predictions: no UNet run.
      std::vector<float> eps(rec->eps_cond.size());
      for (size_t i = 0; i < eps.size(); ++i) eps[i] = rec->eps_uncond[i] + scale_ * (rec->eps_cond[i] - rec->eps_uncond[i]);
      images_.show(f.cmd, f.frame_slot, 2, predicted_x0(rec->x_in, eps, rec->sigma), map);
      key_scale_ = scale_;
    }
    key_step_ = f.shown_step, key_rec_ = rec.get();
  }

  void draw(PanelFrame& f) override {
    explanation(
        "Classifier-free guidance runs the UNet twice per step: once with your prompt (eps_cond) and once with the "
        "negative prompt, or the empty prompt when there is none (eps_uncond). The sampler then uses\n"
        "    eps = eps_uncond + s * (eps_cond - eps_uncond)\n"
        "i.e. it starts from what the model would draw without the prompt and pushes s times as far in the "
        "direction the prompt points. Each picture is the clean image one noise prediction implies at this step, "
        "x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar). s = 1 is the prompt alone, s = 0 the negative prompt alone; "
        "large s exaggerates what distinguishes the prompt (saturated colours, hard contrast). Move the slider: the "
        "guided picture is re-formed from this step's two stored predictions, without running the UNet.");
    if (!rec_) {
      ImGui::TextWrapped(f.job && f.job->steps_recorded() > 0
                             ? "This run has no guidance (scale 1 runs the UNet once per step). Generate with a guidance "
                               "scale other than 1 to compare the two predictions."
                             : "Generate (with guidance, e.g. 5-7) to see the two predictions of every step.");
      return;
    }
    const StepRecord& r = *rec_;
    ImGui::SetNextItemWidth(260);
    ImGui::SliderFloat("guidance scale s", &scale_, 0.f, 20.f, "%.1f");
    ImGui::SameLine();
    ImGui::TextDisabled("(the run used %.1f)", f.job->params().cfg_scale);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < r.eps_cond.size(); ++i) {
      const double d = (double)r.eps_cond[i] - r.eps_uncond[i];
      diff += d * d, norm += (double)r.eps_uncond[i] * r.eps_uncond[i];
    }
    ImGui::Text("step %d of %d, t = %.0f: |eps_cond - eps_uncond| = %.3f, |eps_uncond| = %.3f", r.index + 1, r.count, r.t,
                std::sqrt(diff), std::sqrt(norm));
    const float avail = ImGui::GetContentRegionAvail().x;
    const float side = std::max(64.f, std::min((avail - 2 * ImGui::GetStyle().ItemSpacing.x) / 3.f, 260.f));
    const ImVec2 size(side, side * (float)r.height / (float)r.width);
    rects_[0] = images_.draw(0, "negative prompt alone", size);
    ImGui::SameLine();
    rects_[1] = images_.draw(1, "prompt alone (s = 1)", size);
    ImGui::SameLine();
    char cap[64];
    std::snprintf(cap, sizeof cap, "guided, s = %.1f", scale_);
    rects_[2] = images_.draw(2, cap, size);

    const bool can = f.actions && f.actions->can_run();
    ImGui::BeginDisabled(!can);
    if (ImGui::Button("Re-run from here with this guidance")) rerun(f);
    ImGui::EndDisabled();
    ImGui::SameLine();
    ImGui::TextDisabled("continues from the latent before this step; euler_a / ddpm / lcm draw new noise");
  }

  void facts(PanelFacts& out) const override {
    out.push_back({"scale", std::to_string(scale_)});
    out.push_back({"uncond", json_rect(rects_[0])});
    out.push_back({"cond", json_rect(rects_[1])});
    out.push_back({"guided", json_rect(rects_[2])});
  }

  void release() override {}  // the textures go with the panel; LatentImages waits in release(Window&)

 private:
  void rerun(PanelFrame& f) {
    GenerateParams p = f.job->params();
    p.cfg_scale = scale_;
    const int k = f.shown_step;
    if (k > 0) {
      auto prev = f.job->record_ptr(k - 1);
      p.start_latent = prev->x;
      p.start_step = prev->index + 1;
      p.init_image.reset(), p.mask.reset();
    }
    f.actions->run(p, {});
  }

  LatentImages images_{3};
  std::shared_ptr<const StepRecord> rec_;
  const StepRecord* key_rec_ = nullptr;
  int key_step_ = -1;
  float key_scale_ = NAN, scale_ = 7.f;
  bool scale_from_flag_ = false;
  const StepRecord* run_ = nullptr;
  ImVec4 rects_[3]{};
};

}  // namespace

std::unique_ptr<Panel> make_guidance_panel() { return std::make_unique<GuidancePanel>(); }

}  // namespace vksd::view
