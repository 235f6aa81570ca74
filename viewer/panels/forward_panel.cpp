// "The forward process": what noise level t means. Take a clean image (the last run's, or a
// file), mix its latent with noise exactly as training does, x_t = sqrt(abar_t) x0 +
// sqrt(1 - abar_t) eps, and look at x_t through the latent preview and through the VAE decoder;
// from any t, "denoise from here" runs image-to-image from that noise level.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <cmath>
#include <cstdio>

#include "runtime/gpu/context.h"
#include "runtime/diffusion/rng.h"
#include "runtime/diffusion/schedule.h"
#include "viewer/panels/latent_images.h"
#include "viewer/panels/panel.h"
#include "viewer/window.h"

namespace vksd::view {

namespace {


class ForwardPanel : public Panel {
 public:
  ForwardPanel() { default_size = ImVec2(760, 600); }
  const char* name() const override { return "forward"; }
  const char* title() const override { return "The forward process: adding noise"; }

  bool set(const std::string& key, const std::string& value) override {
    if (key != "t") return false;
    t_ = std::stoi(value);
    return true;
  }
  // Headless: wait until the VAE has decoded the x_t on show.
  bool busy() const override { return decoding_.valid() || (!x0_.empty() && decoded_t_ != t_); }

  void update(PanelFrame& f) override {
    if (!f.job || !f.pipe) return;
    const int T = (int)f.pipe->schedule().alphas_cumprod().size();
    t_ = std::clamp(t_, 0, T - 1);
    take_last_run(f);
    poll_encode();
    if (x0_.empty()) return;
    images_.ensure(f.ctx, f.renderer, f.window, c_, lh_, lw_);
    if (!decoded_tex_ || decoded_tex_->width() != w_ || decoded_tex_->height() != h_) {
      f.window.wait_frames();
      decoded_tex_ = std::make_unique<Texture>(f.ctx, f.renderer, w_, h_, true);
      x0_tex_ = std::make_unique<Texture>(f.ctx, f.renderer, w_, h_, true);
      decoded_t_ = -1, shown_src_ = -1;
    }
    const auto& map = f.pipe->config().preview;
    if (shown_t_ != t_ || shown_src_ != src_version_) {
      const double a = f.pipe->schedule().alphas_cumprod(t_);
      xt_.resize(x0_.size());
      for (size_t i = 0; i < xt_.size(); ++i) xt_[i] = (float)(std::sqrt(a) * x0_[i] + std::sqrt(1 - a) * eps_[i]);
      if (shown_src_ != src_version_) x0_tex_->upload(f.cmd, f.frame_slot, image_);
      images_.show(f.cmd, f.frame_slot, 0, xt_, map);
      shown_t_ = t_, shown_src_ = src_version_;
    }
    // Through the VAE: one decode at a time on the job thread; the newest t wins.
    if (decoding_.valid() && decoding_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      try {
        decoding_.get();
        decoded_tex_->upload(f.cmd, f.frame_slot, *decoded_);
        decoded_t_ = decoding_t_;
      } catch (const std::exception& e) {
        error_ = e.what();
        decoded_t_ = t_;  // do not retry the same failure every frame
      }
    }
    if (!decoding_.valid() && decoded_t_ != t_ && f.job->state() != JobState::Running && f.job->state() != JobState::Paused) {
      auto latent = xt_;
      auto out = decoded_ = std::make_shared<Image>();
      const int h = lh_, w = lw_;
      decoding_t_ = t_;
      try {
        decoding_ = f.job->submit([latent, out, h, w](SdPipeline& p) {
          auto px = p.decode_latent(latent, h, w);
          *out = tensor_to_image(px.data(), 3, h * (int)std::lround(std::sqrt(px.size() / 3.0 / (h * w))),
                                 w * (int)std::lround(std::sqrt(px.size() / 3.0 / (h * w))));
        });
      } catch (const std::exception& e) {
        error_ = e.what();
      }
    }
  }

  void draw(PanelFrame& f) override {
    explanation(
        "Training teaches the UNet to undo one thing: a clean latent x0 mixed with Gaussian noise eps at a level t,\n"
        "    x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps,\n"
        "where abar_t (alpha-bar) falls from ~1 at t = 0 (clean) to ~0 at t = 999 (pure noise) along the model's "
        "schedule. Move t: the middle picture is x_t as the sampler holds it, the right one is x_t decoded by the VAE "
        "(what the noise looks like as pixels). Generation runs this backwards: it starts at t = 999 and removes a "
        "little noise per step. 'Denoise from here' starts image-to-image at this noise level: the model keeps what "
        "the noise has not yet destroyed.");
    if (!f.pipe) return;
    ImGui::SetNextItemWidth(-170);
    ImGui::InputTextWithHint("##file", "an image file (or generate one: the last run is used)", &path_);
    ImGui::SameLine();
    ImGui::BeginDisabled(path_.empty() || !f.job || f.job->state() == JobState::Running || f.job->state() == JobState::Paused);
    if (ImGui::Button("Load image")) load_file(f);
    ImGui::EndDisabled();
    if (!error_.empty()) ImGui::TextColored(ImVec4(1, 0.4f, 0.4f, 1), "%s", error_.c_str());
    if (x0_.empty()) {
      ImGui::TextWrapped("Generate an image first (or load one): its latent is the clean x0 here.");
      return;
    }
    const int T = (int)f.pipe->schedule().alphas_cumprod().size();
    ImGui::SetNextItemWidth(-120);
    ImGui::SliderInt("noise level t", &t_, 0, T - 1);
    const double a = f.pipe->schedule().alphas_cumprod(t_);
    ImGui::Text("abar_t = %.4f   x_t = %.3f * x0 + %.3f * eps   SNR = abar/(1-abar) = %.4g", a, std::sqrt(a), std::sqrt(1 - a),
                a / std::max(1e-12, 1 - a));
    ImGui::TextDisabled("source: %s; eps from seed %llu", source_.c_str(), (unsigned long long)seed_);
    const float avail = ImGui::GetContentRegionAvail().x;
    const float side = std::max(64.f, std::min((avail - 2 * ImGui::GetStyle().ItemSpacing.x) / 3.f, 240.f));
    const ImVec2 size(side, side * (float)h_ / (float)w_);
    ImGui::BeginGroup();
    ImGui::TextUnformatted("x0: the clean image");
    ImGui::Image(x0_tex_->id(), size);
    rects_[0] = item_fb_rect();
    ImGui::EndGroup();
    ImGui::SameLine();
    char cap[64];
    std::snprintf(cap, sizeof cap, "x_t at t = %d (latent)", t_);
    rects_[1] = images_.draw(0, cap, size);
    ImGui::SameLine();
    ImGui::BeginGroup();
    std::snprintf(cap, sizeof cap, decoded_t_ == t_ ? "x_t through the VAE" : "x_t through the VAE (decoding)");
    ImGui::TextUnformatted(cap);
    if (decoded_tex_ && decoded_t_ >= 0) ImGui::Image(decoded_tex_->id(), size);
    else ImGui::Dummy(size);
    rects_[2] = item_fb_rect();
    ImGui::EndGroup();
    ImGui::BeginDisabled(!f.actions || !f.actions->can_run());
    if (ImGui::Button("Denoise from here (image-to-image at this noise level)")) denoise(f, T);
    ImGui::EndDisabled();
  }

  void facts(PanelFacts& out) const override {
    out.push_back({"t", std::to_string(t_)});
    out.push_back({"decoded_t", std::to_string(decoded_t_)});
    out.push_back({"x0", json_rect(rects_[0])});
    out.push_back({"xt", json_rect(rects_[1])});
    out.push_back({"decoded", json_rect(rects_[2])});
  }

  void release() override {
    if (decoding_.valid()) decoding_.wait();
    decoding_ = {};
  }

 private:
  // The newest finished run becomes the source (unless a file was loaded since).
  void take_last_run(PanelFrame& f) {
    if (f.job->state() != JobState::Done || f.job->version() == seen_version_) return;
    seen_version_ = f.job->version();
    auto res = f.job->result();
    if (!res || res->image.pixels.empty()) return;
    const auto p = f.job->params();
    const int factor = f.pipe->config().vae.downsample_factor();
    set_source(res->latent, res->image, p.seed, p.height / factor, p.width / factor, "the last run (" + p.prompt + ")");
  }

  void set_source(const std::vector<float>& latent, const Image& img, uint64_t seed, int lh, int lw, const std::string& what) {
    x0_ = latent, image_ = img, seed_ = seed, lh_ = lh, lw_ = lw;
    c_ = (int)(latent.size() / ((size_t)lh * lw));
    h_ = img.height, w_ = img.width;
    TorchRng rng(seed);
    eps_ = rng.randn((int64_t)latent.size());  // the seed's noise, as generation draws it first
    source_ = what;
    ++src_version_;
    decoded_t_ = -1;
    error_.clear();
  }

  // A file: encoded by the VAE on the job thread.
  void load_file(PanelFrame& f) {
    error_.clear();
    try {
      Image img = read_image(path_, 3);
      const int m = f.pipe->size_multiple();
      if (img.width % m || img.height % m)
        fail("the image is " + std::to_string(img.width) + "x" + std::to_string(img.height) + "; sides must be multiples of " + std::to_string(m));
      auto out = std::make_shared<std::vector<float>>();
      auto t = image_to_tensor(img);
      const int h = img.height, w = img.width;
      encoding_ = f.job->submit([out, t, h, w](SdPipeline& p) { *out = p.encode_image(t, h, w); });
      pending_image_ = img, pending_latent_ = out;
      factor_ = f.pipe->config().vae.downsample_factor();
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }
  void poll_encode() {
    if (!encoding_.valid() || encoding_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    try {
      encoding_.get();
      set_source(*pending_latent_, pending_image_, 0, pending_image_.height / factor_, pending_image_.width / factor_, path_);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }

  void denoise(PanelFrame& f, int T) {
    GenerateParams p = f.ui_params;
    p.init_image = image_;
    p.width = image_.width, p.height = image_.height;
    p.mask.reset();
    p.strength = (double)t_ / (T - 1);
    p.seed = seed_;
    f.actions->run(p, {});
  }

  int t_ = 500, shown_t_ = -1, decoded_t_ = -1, decoding_t_ = -1;
  uint64_t seen_version_ = 0, seed_ = 0;
  int src_version_ = 0, shown_src_ = -1;
  std::vector<float> x0_, eps_, xt_;
  Image image_;
  int c_ = 4, lh_ = 0, lw_ = 0, h_ = 0, w_ = 0, factor_ = 8;
  std::string source_, path_, error_;
  LatentImages images_{1};
  std::unique_ptr<Texture> decoded_tex_, x0_tex_;
  std::future<void> decoding_, encoding_;
  std::shared_ptr<Image> decoded_;
  Image pending_image_;
  std::shared_ptr<std::vector<float>> pending_latent_;
  ImVec4 rects_[3]{};
};

}  // namespace

std::unique_ptr<Panel> make_forward_panel() { return std::make_unique<ForwardPanel>(); }

}  // namespace vksd::view
