// "Inside the latent": the numbers the UNet works on at the step on screen, channel by channel as
// heatmaps — x_t (what the sampler holds, scaled to unit variance as the UNet sees it) and x0-hat
// (the model's guess of the clean latent) on one shared symmetric colour scale, the noise
// predictions (prompt, negative prompt, guided) on another — and the mean and standard deviation
// of x_t and eps over the steps. The heatmaps are computed on the GPU (the runtime's
// HeatmapPreview, recorded into the frame's command buffer and copied into textures): one texture
// per quantity, its channels stacked, drawn channel by channel.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "runtime/diffusion/preview.h"
#include "runtime/diffusion/samplers.h"
#include "viewer/panels/panel.h"
#include "viewer/panels/plot.h"
#include "viewer/texture.h"
#include "viewer/window.h"

namespace vksd::view {

namespace {

using namespace plot_colors;

// The heatmaps, in texture order.
enum Map { kXt, kX0, kEpsCond, kEpsUncond, kEps, kMaps };

struct Stats {
  double mean = 0, std = 0;
};
Stats stats_of(const std::vector<float>& v, double scale = 1) {
  Stats s;
  if (v.empty()) return s;
  double sum = 0, sq = 0;
  for (float x : v) sum += x * scale, sq += (double)x * scale * x * scale;
  s.mean = sum / (double)v.size();
  s.std = std::sqrt(std::max(0.0, sq / (double)v.size() - s.mean * s.mean));
  return s;
}

double max_abs(const std::vector<float>& v, double scale = 1) {
  double m = 0;
  for (float x : v)
    if (std::isfinite(x)) m = std::max(m, std::abs((double)x * scale));
  return m;
}

ImVec4 fb(ImVec2 a, ImVec2 b) {
  const ImVec2 s = ImGui::GetIO().DisplayFramebufferScale;
  return ImVec4(a.x * s.x, a.y * s.y, b.x * s.x, b.y * s.y);
}

class LatentPanel : public Panel {
 public:
  LatentPanel() { default_size = ImVec2(1000, 850); }
  const char* name() const override { return "latent"; }
  const char* title() const override { return "Inside the latent"; }

  void update(PanelFrame& f) override {
    rec_ = nullptr;
    if (!f.job || !f.pipe || f.shown_step < 0) return;
    auto rec = f.job->record_ptr(f.shown_step);
    if (!rec || rec->x.empty() || rec->denoised.empty() || rec->eps.empty()) return;
    update_stats(*f.job);
    shown_k_ = f.shown_step;
    const int C = rec->channels, h = rec->height, w = rec->width;
    if (!preview_ || C != channels_ || h != lh_ || w != lw_) {
      // New latent geometry: the old textures may still be drawn by frames in flight.
      f.window.wait_frames();
      textures_.clear();
      preview_.reset();
      channels_ = C, lh_ = h, lw_ = w;
      preview_ = std::make_unique<HeatmapPreview>(f.ctx, C * h, w, Window::kFramesInFlight * kMaps);
      for (int k = 0; k < kMaps; ++k) textures_.push_back(std::make_unique<Texture>(f.ctx, f.renderer, w, C * h, true));
      shown_.reset();
    }
    if (rec != shown_) {
      // The step or the run changed: re-record the heatmaps. The channels of a [1, C, h, w] latent
      // are contiguous, so the whole latent is one [C * h, w] field.
      guided_ = !rec->eps_uncond.empty() && !rec->eps_cond.empty();
      xt_scale_ = 1.0 / std::hypot(rec->x_signal, rec->x_noise);
      xt_.resize(rec->x.size());
      for (size_t i = 0; i < xt_.size(); ++i) xt_[i] = (float)(rec->x[i] * xt_scale_);
      range_x_ = std::max({max_abs(xt_), max_abs(rec->denoised), 1e-6});
      range_e_ = std::max(max_abs(rec->eps), 1e-6);
      if (guided_) range_e_ = std::max({range_e_, max_abs(rec->eps_cond), max_abs(rec->eps_uncond)});
      const float rx = (float)range_x_, re = (float)range_e_;
      show(f, kXt, xt_.data(), rx);
      show(f, kX0, rec->denoised.data(), rx);
      show(f, kEps, rec->eps.data(), re);
      if (guided_) {
        show(f, kEpsCond, rec->eps_cond.data(), re);
        show(f, kEpsUncond, rec->eps_uncond.data(), re);
      }
      // x = signal x0-hat + noise eps, checked on this step's numbers.
      double d2 = 0, x2 = 0;
      for (size_t i = 0; i < rec->x.size(); ++i) {
        const double d = rec->x[i] - (rec->x_signal * rec->denoised[i] + rec->x_noise * rec->eps[i]);
        d2 += d * d, x2 += (double)rec->x[i] * rec->x[i];
      }
      residual_ = std::sqrt(d2 / std::max(x2, 1e-30));
      shown_ = rec;
    }
    rec_ = rec;
    cfg_scale_ = cfg_scale_run_;
  }

  void draw(PanelFrame& f) override {
    for (ImVec4& r : rects_) r = ImVec4(0, 0, 0, 0);
    marker_x_ = -1;
    if (!rec_) {
      explanation(
          "The UNet never works on pixels: the VAE squeezes the image into a small 'latent' (4 channels, 1/8 of the "
          "width and height) and all of diffusion happens there. Generate (or pause a run) to see the latent of the "
          "step on the timeline channel by channel.");
      ImGui::TextDisabled("Nothing generated yet.");
      return;
    }
    const StepRecord& r = *rec_;
    const int f8 = f.pipe ? f.pipe->config().vae.downsample_factor() : 8;
    const char* sampler = sampler_cli_name(sampler_);
    const double sig = r.x_signal * xt_scale_, noi = r.x_noise * xt_scale_;
    char text[2600];
    std::snprintf(
        text, sizeof text,
        "The UNet never works on pixels. The VAE squeezes the %dx%d image into a latent of %d channels x %d x %d "
        "numbers (one latent pixel per %dx%d block of the image), and all of diffusion happens there. Each square is "
        "one channel as a heatmap: blue below zero, white zero, red above (the bars give the numbers).\n"
        "  x_t: what the sampler holds after this step, picture and noise mixed (scaled to unit variance, as the UNet "
        "sees it).\n"
        "  x0-hat: the model's current guess of the clean latent: where the run is heading.\n"
        "  eps: the noise the UNet believes is in its input; this is what the network outputs.%s\n"
        "They are tied by x_t = signal\xc2\xb7x0-hat + noise\xc2\xb7" "eps. In this step (%d of %d) the UNet saw the "
        "latent at t = %.1f and predicted eps and x0-hat; after the step %s holds "
        "x = %.3f\xc2\xb7x0-hat + %.3f\xc2\xb7" "eps; divided by sqrt(%.3f\xc2\xb2 + %.3f\xc2\xb2) = %.3f that is "
        "x_t = %.3f\xc2\xb7x0-hat + %.3f\xc2\xb7" "eps (checked on these numbers: the two sides differ by %.1e of |x|%s).",
        r.width * f8, r.height * f8, r.channels, r.height, r.width, f8, f8,
        guided_ ? " With guidance the UNet runs twice, with your prompt (eps_cond) and with the negative or empty "
                  "prompt (eps_uncond), and the sampler uses eps = eps_uncond + s\xc2\xb7(eps_cond - eps_uncond)."
                : "",
        r.index + 1, r.count, r.t, sampler, r.x_signal, r.x_noise, r.x_signal, r.x_noise, 1 / xt_scale_, sig, noi,
        residual_,
        residual_ > 1e-3 ? "; this sampler adds fresh noise after each step, so the mix holds only roughly" : "");
    explanation(text);
    ImGui::Text("step %d of %d (%s): the UNet saw t = %.1f, sigma = %.4g; x_t is the latent after the step%s", r.index + 1,
                r.count, sampler, r.t, r.sigma, guided_ ? "" : "   (no guidance: one prediction per step)");

    // Cell size: an integer zoom of the latent where it fits (crisp blocks), two groups side by side.
    const ImGuiStyle& st = ImGui::GetStyle();
    const float avail = ImGui::GetContentRegionAvail().x, label_w = 96, gap = 4;
    const float group_w = (avail - 3 * st.ItemSpacing.x) / 2;
    float cell = std::clamp((group_w - label_w) / (float)r.channels - gap, 24.f, 88.f);
    if (cell >= (float)r.width) cell = std::floor(cell / (float)r.width) * (float)r.width;
    const ImVec2 size(cell, cell * (float)r.height / (float)r.width);
    cell_px_ = size.x * ImGui::GetIO().DisplayFramebufferScale.x, gap_px_ = gap * ImGui::GetIO().DisplayFramebufferScale.x;

    ImGui::BeginGroup();
    ImGui::TextUnformatted("The latent: x_t and x0-hat (one colour scale)");
    channel_header(label_w, size.x, gap);
    rects_[kXt] = row("x_t", kXt, label_w, size, gap);
    rects_[kX0] = row("x0-hat", kX0, label_w, size, gap);
    legend(range_x_, label_w, r.channels * (size.x + gap) - gap);
    ImGui::Spacing();
    ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(1.f, 0.86f, 0.3f, 1.f));
    ImGui::Text("x_t = %.3f\xc2\xb7x0-hat + %.3f\xc2\xb7" "eps", sig, noi);
    ImGui::PopStyleColor();
    ImGui::TextDisabled("%.0f%% picture, %.0f%% noise (by variance)", 100 * sig * sig, 100 * noi * noi);
    ImGui::EndGroup();
    ImGui::SameLine(0, 3 * st.ItemSpacing.x);
    ImGui::BeginGroup();
    ImGui::TextUnformatted("The noise prediction eps (one colour scale)");
    channel_header(label_w, size.x, gap);
    if (guided_) {
      rects_[kEpsCond] = row("eps_cond", kEpsCond, label_w, size, gap, "your prompt");
      rects_[kEpsUncond] = row("eps_uncond", kEpsUncond, label_w, size, gap, "the negative (or empty) prompt");
      char tip[64];
      std::snprintf(tip, sizeof tip, "guided, s = %.1f", cfg_scale_);
      rects_[kEps] = row("eps guided", kEps, label_w, size, gap, tip);
    } else {
      rects_[kEps] = row("eps", kEps, label_w, size, gap);
    }
    legend(range_e_, label_w, r.channels * (size.x + gap) - gap);
    ImGui::EndGroup();

    // Statistics over the steps, the shown one marked.
    ImGui::Spacing();
    const int n = (int)stat_xt_.size();
    const float pw = (avail - st.ItemSpacing.x) / 2,
                ph = std::clamp(ImGui::GetContentRegionAvail().y - st.ItemSpacing.y, 140.f, 280.f);
    const double x1 = std::max(steps_total_, n) + 0.5;
    auto stat_plot = [&](const char* title, const std::vector<Stats>& v) {
      std::vector<double> xs, mean, sd;
      double lo = 0, hi = 1;
      for (int k = 0; k < (int)v.size(); ++k) {
        xs.push_back(k + 1), mean.push_back(v[(size_t)k].mean), sd.push_back(v[(size_t)k].std);
        lo = std::min({lo, v[(size_t)k].mean, v[(size_t)k].std}), hi = std::max({hi, v[(size_t)k].mean, v[(size_t)k].std});
      }
      const double pad = 0.08 * (hi - lo);
      PlotArea p(title, ImVec2(pw, ph), {0.5, x1, false, "step"}, {lo - pad, hi + pad, false, ""});
      p.legend({{"mean", kBlue}, {"std", kOrange}});
      p.hline(0, kDim);
      p.line(xs, mean, kBlue, 2.f);
      p.line(xs, sd, kOrange, 2.f);
      for (size_t k = 0; k < xs.size(); ++k) p.dot(xs[k], mean[k], kBlue, 2.5f), p.dot(xs[k], sd[k], kOrange, 2.5f);
      if (shown_k_ >= 0 && shown_k_ < (int)xs.size()) {
        p.vline(xs[(size_t)shown_k_], kMarker, 2.f);
        char b[32];
        std::snprintf(b, sizeof b, "step %d", shown_k_ + 1);
        p.tag(xs[(size_t)shown_k_], kMarker, b);
        p.dot(xs[(size_t)shown_k_], mean[(size_t)shown_k_], kMarker, 4.5f);
        p.dot(xs[(size_t)shown_k_], sd[(size_t)shown_k_], kMarker, 4.5f);
        if (marker_x_ < 0) marker_x_ = p.px(xs[(size_t)shown_k_]) * ImGui::GetIO().DisplayFramebufferScale.x;
      }
      return p.fb_rect();
    };
    stats_rect_ = stat_plot("x_t over the steps", stat_xt_);
    ImGui::SameLine();
    stat_plot(guided_ ? "eps (guided) over the steps" : "eps over the steps", stat_eps_);
  }

  void facts(PanelFacts& out) const override {
    static const char* keys[kMaps] = {"xt", "x0", "eps_cond", "eps_uncond", "eps"};
    for (int k = 0; k < kMaps; ++k) out.push_back({keys[k], json_rect(rects_[k])});
    char b[64];
    std::snprintf(b, sizeof b, "%.6g", rec_ ? range_x_ : 0.0);
    out.push_back({"range_x", b});
    std::snprintf(b, sizeof b, "%.6g", rec_ ? range_e_ : 0.0);
    out.push_back({"range_eps", b});
    out.push_back({"channels", std::to_string(rec_ ? rec_->channels : 0)});
    out.push_back({"latent_size", rec_ ? "[" + std::to_string(rec_->width) + ", " + std::to_string(rec_->height) + "]" : "null"});
    out.push_back({"step", std::to_string(rec_ ? rec_->index : -1)});
    out.push_back({"guided", guided_ && rec_ ? "true" : "false"});
    out.push_back({"stats_plot", json_rect(stats_rect_)});
    std::snprintf(b, sizeof b, "%.2f", cell_px_);
    out.push_back({"cell_px", b});  // one channel's square, framebuffer pixels
    std::snprintf(b, sizeof b, "%.2f", gap_px_);
    out.push_back({"gap_px", b});   // between channels
    std::snprintf(b, sizeof b, "%.2f", marker_x_);
    out.push_back({"marker_x", b});
  }

  // The app has waited for the frames in flight.
  void release() override {
    textures_.clear();
    preview_.reset();
    shown_.reset(), rec_.reset(), first_.reset();
    stat_xt_.clear(), stat_eps_.clear();
  }

 private:
  void show(PanelFrame& f, int k, const float* values, float range) {
    const int slot = f.frame_slot * kMaps + k;
    preview_->record(f.cmd, slot, values, -range, range, ColorMap::Diverging);
    textures_[(size_t)k]->record_copy_from(f.cmd, preview_->output_buffer(), preview_->output_offset(slot));
  }

  // Per-step statistics of the run (records never change; a new run starts a new list).
  void update_stats(GenerationJob& job) {
    const int n = job.steps_recorded();
    auto first = job.record_ptr(0);
    if (first != first_ || n < (int)stat_xt_.size()) {
      first_ = first;  // held: its address cannot be reused by a later run's record
      stat_xt_.clear(), stat_eps_.clear();
      const GenerateParams p = job.params();
      sampler_ = p.sampler, cfg_scale_run_ = p.cfg_scale;
      steps_total_ = job.progress().steps_total;
    }
    for (int k = (int)stat_xt_.size(); k < n; ++k) {
      auto r = job.record_ptr(k);
      stat_xt_.push_back(stats_of(r->x, 1.0 / std::hypot(r->x_signal, r->x_noise)));
      stat_eps_.push_back(stats_of(r->eps));
    }
  }

  void channel_header(float label_w, float cell, float gap) const {
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    for (int c = 0; c < channels_; ++c) {
      char b[24];
      std::snprintf(b, sizeof b, "channel %d", c);
      const float w = ImGui::CalcTextSize(b).x;
      const float x = p.x + label_w + c * (cell + gap) + (cell - w) / 2;
      dl->AddText(ImVec2(x, p.y), IM_COL32(170, 170, 180, 255), w <= cell + gap ? b : b + 8);
    }
    ImGui::Dummy(ImVec2(label_w + channels_ * (cell + gap), ImGui::GetTextLineHeight()));
  }

  // One quantity: its label and its channels; returns the channels' rectangle (framebuffer px).
  ImVec4 row(const char* label, int k, float label_w, ImVec2 size, float gap, const char* sub = nullptr) const {
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float fh = ImGui::GetFontSize();
    dl->AddText(ImVec2(p.x, p.y + size.y / 2 - (sub ? fh : fh / 2)), IM_COL32(235, 235, 240, 255), label);
    if (sub) {
      // Wrapped into the label column.
      dl->AddText(nullptr, 0.f, ImVec2(p.x, p.y + size.y / 2), IM_COL32(150, 150, 160, 255), sub, nullptr, label_w - 6);
    }
    const Texture& t = *textures_[(size_t)k];
    const ImVec2 a(p.x + label_w, p.y);
    for (int c = 0; c < channels_; ++c) {
      const ImVec2 c0(a.x + c * (size.x + gap), a.y), c1(c0.x + size.x, c0.y + size.y);
      dl->AddImage(t.id(), c0, c1, ImVec2(0, (float)c / channels_), ImVec2(1, (float)(c + 1) / channels_));
      dl->AddRect(ImVec2(c0.x - 1, c0.y - 1), ImVec2(c1.x + 1, c1.y + 1), IM_COL32(90, 90, 100, 255));
    }
    const ImVec2 b(a.x + channels_ * (size.x + gap) - gap, a.y + size.y);
    ImGui::Dummy(ImVec2(b.x - p.x, size.y + gap));
    return fb(a, b);
  }

  // The colour bar of a symmetric scale [-range, range], with numbers (the CPU mapping).
  void legend(double range, float label_w, float width) const {
    const ImVec2 p = ImGui::GetCursorScreenPos();
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float h = 12, fh = ImGui::GetFontSize();
    const ImVec2 a(p.x + label_w, p.y + 2);
    dl->AddText(ImVec2(p.x, a.y - 1), IM_COL32(170, 170, 180, 255), "scale");
    const int n = 128;
    for (int i = 0; i < n; ++i) {
      uint8_t c[3];
      heatmap_color(((float)i + 0.5f) / n, ColorMap::Diverging, c);
      dl->AddRectFilled(ImVec2(a.x + width * i / n, a.y), ImVec2(a.x + width * (i + 1) / n + 0.5f, a.y + h),
                        IM_COL32(c[0], c[1], c[2], 255));
    }
    dl->AddRect(ImVec2(a.x - 1, a.y - 1), ImVec2(a.x + width + 1, a.y + h + 1), IM_COL32(90, 90, 100, 255));
    for (int j = 0; j <= 4; ++j) {
      const double v = range * (j - 2) / 2.0;
      char b[32];
      std::snprintf(b, sizeof b, range >= 10 ? "%+.0f" : range >= 1 ? "%+.2f" : "%+.3f", v);
      if (j == 2) std::snprintf(b, sizeof b, "0");
      const float x = a.x + width * j / 4.f, w = ImGui::CalcTextSize(b).x;
      dl->AddLine(ImVec2(x, a.y + h), ImVec2(x, a.y + h + 4), IM_COL32(200, 200, 210, 255));
      dl->AddText(ImVec2(std::clamp(x - w / 2, a.x - 4, a.x + width + 4 - w), a.y + h + 4), IM_COL32(215, 215, 222, 255), b);
    }
    ImGui::Dummy(ImVec2(label_w + width, h + 6 + fh));
  }

  std::unique_ptr<HeatmapPreview> preview_;
  std::vector<std::unique_ptr<Texture>> textures_;
  int channels_ = 0, lh_ = 0, lw_ = 0;
  std::shared_ptr<const StepRecord> rec_, shown_, first_;
  std::vector<float> xt_;
  double xt_scale_ = 1, range_x_ = 1, range_e_ = 1, residual_ = 0;
  bool guided_ = false;
  SamplerKind sampler_ = SamplerKind::Euler;
  double cfg_scale_run_ = 1, cfg_scale_ = 1;
  int steps_total_ = 0, shown_k_ = -1;
  std::vector<Stats> stat_xt_, stat_eps_;
  ImVec4 rects_[kMaps]{}, stats_rect_{};
  float marker_x_ = -1, cell_px_ = 0, gap_px_ = 0;
};

}  // namespace

std::unique_ptr<Panel> make_latent_panel() { return std::make_unique<LatentPanel>(); }

}  // namespace vksd::view
