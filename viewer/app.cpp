#include "viewer/app.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <GLFW/glfw3.h>

#include "runtime/gpu/context.h"
#include "runtime/model/demo_model.h"
#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/diffusion/rng.h"
#include "runtime/diffusion/samplers.h"
#include "viewer/window.h"

namespace fs = std::filesystem;

namespace vksd::view {

ViewerApp::ViewerApp(Context& ctx, Window& win, ImGuiRenderer& r, const ViewOptions& o)
    : ctx_(ctx), win_(win), renderer_(r), opts_(o) {
  sampler_names_ = sampler_cli_names();
  model_path_ = o.model;
  vocab_path_ = o.vocab;
  prompt_ = o.prompt;
  negative_ = o.negative;
  seed_ = o.seed;
  steps_ = o.steps;
  cfg_ = (float)o.cfg;
  width_ = o.width, height_ = o.height;
  clip_skip_ = o.clip_skip;
  strength_ = (float)o.strength;
  preview_mode_ = o.preview == "vae" ? 1 : 0;
  vae_every_ = o.vae_every;
  for (size_t i = 0; i < sampler_names_.size(); ++i)
    if (sampler_names_[i] == o.sampler) sampler_ = (int)i;
  if (!o.init_img.empty()) {
    init_path_ = o.init_img;
    use_init_ = true;
  }
  panels_ = make_panels();
  for (auto& name : o.panels)
    for (auto& p : panels_)
      if (name == p->name()) p->open = true;
  for (auto& [key, value] : o.panel_settings) {
    const std::string panel = key.substr(0, key.find('.')), k = key.substr(key.find('.') + 1);
    bool known = false;
    for (auto& p : panels_)
      if (panel == p->name()) known = p->set(k, value);
    if (!known) fail("--panel-set " + key + "=" + value + ": no such panel setting");
  }
  start_loading();
}

ViewerApp::~ViewerApp() {
  job_.reset();  // cancels and joins
  win_.wait_frames();
  for (auto& p : panels_) p->release();
  if (loading_.valid()) loading_.wait();
}

bool ViewerApp::busy() const {
  if (loading_.valid()) return true;
  if (!job_) return false;
  JobState s = job_->state();
  return s == JobState::Running;
}

void ViewerApp::note_frame_time(double ms) {
  auto& v = busy() && job_ && job_->state() == JobState::Running ? frame_ms_busy_ : frame_ms_idle_;
  if (v.size() < 100000) v.push_back(ms);
}

// ---- model ------------------------------------------------------------------------------------

void ViewerApp::start_loading() {
  if (job_ && (job_->state() == JobState::Running || job_->state() == JobState::Paused)) {
    message_ = "cancel the running generation before loading another model";
    return;
  }
  job_.reset();
  win_.wait_frames();
  for (auto& p : panels_) p->release();
  pipe_.reset();
  view_.reset();
  model_error_.clear();
  PipelineOptions po;
  try {
    po.model_path = model_path_.empty() ? default_model_path() : model_path_;
  } catch (const std::exception& e) {
    model_error_ = e.what();
    error_panel_open_ = true;
    return;
  }
  po.config_path = opts_.config;
  po.vocab_path = vocab_path_;
  po.lora_dir = opts_.lora_dir;
  po.fp32 = opts_.fp32;
  po.lowvram = opts_.lowvram;
  po.memory_budget_mb = opts_.memory_budget_mb;
  Context* ctx = &ctx_;
  // The checkpoint is read and parsed off the UI thread: a 2 GB model takes seconds.
  loading_ = std::async(std::launch::async, [ctx, po]() {
    if (!fs::exists(po.model_path)) fail("model not found: " + po.model_path);
    return std::make_unique<SdPipeline>(*ctx, po);
  });
}

void ViewerApp::poll_loading() {
  if (!loading_.valid() || loading_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
  try {
    pipe_ = loading_.get();
    job_ = std::make_unique<GenerationJob>(*pipe_);
    const int m = pipe_->size_multiple(), def = pipe_->config().sample_size;
    if (width_ <= 0) width_ = def;
    if (height_ <= 0) height_ = def;
    width_ = std::max(m, width_ / m * m), height_ = std::max(m, height_ / m * m);
    clip_skip_ = std::clamp(clip_skip_, 1, pipe_->config().clip.layers);
    if (use_init_ && !init_path_.empty() && !init_image_) load_init_image();
  } catch (const std::exception& e) {
    pipe_.reset();
    job_.reset();
    model_error_ = e.what();
    error_panel_open_ = true;
  }
}

// ---- generation -------------------------------------------------------------------------------

std::optional<GenerateParams> ViewerApp::params_from_ui() {
  GenerateParams p;
  p.prompt = prompt_;
  p.negative_prompt = negative_;
  p.width = width_, p.height = height_;
  p.steps = steps_;
  p.cfg_scale = cfg_;
  p.sampler = parse_sampler(sampler_names_[(size_t)sampler_]);
  p.seed = seed_ < 0 ? random_seed() : (uint64_t)seed_;
  p.clip_skip = clip_skip_;
  if (use_init_) {
    if (!init_image_) {
      message_ = "no init image loaded: give its path and press Load, or untick img2img";
      return std::nullopt;
    }
    p.init_image = *init_image_;
    p.strength = strength_;
    if (use_mask_) p.mask = mask_;
  }
  return p;
}

bool ViewerApp::can_run() const {
  if (!job_ || !pipe_ || loading_.valid()) return false;
  const JobState s = job_->state();
  return s != JobState::Running && s != JobState::Paused;
}

bool ViewerApp::run(const GenerateParams& p, const JobOptions& o) {
  if (!can_run()) {
    message_ = "a run is active (or no model is loaded): cancel it first";
    return false;
  }
  JobOptions jo = o;
  if (preview_mode_ == 1 && jo.vae_preview_every == 0) jo.vae_preview_every = vae_every_;
  GenerateParams q = p;
  if (profiling_wanted_) q.profile = true;  // an open panel shows GPU times (want_profiling)
  if (attention_wanted_) q.attention_maps = true;  // an open panel shows them (want_attention_maps)
  try {
    job_->start(q, jo);
  } catch (const std::exception& e) {
    message_ = e.what();  // a bad parameter: the UI stays as it was
    return false;
  }
  message_.clear();
  last_params_ = p;
  last_seed_ = p.seed;
  ++run_id_;
  shown_step_ = -1;
  live_ = true;
  playing_ = false;
  return true;
}

void ViewerApp::generate() {
  if (!can_run()) return;
  auto p = params_from_ui();
  if (!p) return;
  JobOptions jo;
  if (opts_.stop_at >= 0 && phase_ == Phase::Generating) jo.stop_at = opts_.stop_at;
  if (opts_.cancel_at >= 0 && phase_ == Phase::Generating) jo.stop_at = opts_.cancel_at;
  run(*p, jo);
}

void ViewerApp::pause_resume() {
  if (!job_) return;
  if (job_->state() == JobState::Running) job_->pause();
  else if (job_->state() == JobState::Paused) job_->resume();
}

void ViewerApp::step_once() {
  if (job_ && job_->state() == JobState::Paused) job_->step();
}

void ViewerApp::cancel() {
  if (job_ && (job_->state() == JobState::Running || job_->state() == JobState::Paused)) job_->cancel();
}

// Records the texture updates for what the canvas should show now, if that changed.
void ViewerApp::update_views(VkCommandBuffer cmd, int frame_slot) {
  if (!job_ || !pipe_) return;
  const int n = job_->steps_recorded();
  if (n == 0) return;
  if (live_ || shown_step_ < 0) shown_step_ = n - 1;
  shown_step_ = std::clamp(shown_step_, 0, n - 1);
  auto rec = job_->record_ptr(shown_step_);
  const auto& cfg = pipe_->config();
  const int f = cfg.vae.downsample_factor();
  const int W = rec->width * f, H = rec->height * f;
  if (!view_ || !view_->fits(rec->channels, rec->height, rec->width, W, H, smooth_)) {
    win_.wait_frames();  // the old textures may still be drawn by frames in flight
    view_.reset();
    view_ = std::make_unique<StepView>(ctx_, renderer_, rec->channels, rec->height, rec->width, W, H, smooth_);
    views_step_ = -1;
  }
  // Which decoded image belongs on x̂0: the final image at the last step of a finished run,
  // else (VAE preview mode) the newest VAE decode at or before the shown step.
  int decoded = -2;
  const bool done = job_->state() == JobState::Done;
  const Image* img = nullptr;
  std::optional<GenerateResult> res;
  if (done && shown_step_ == n - 1) {
    res = job_->result();
    if (res) decoded = -1, img = &res->image;
  }
  std::shared_ptr<const StepRecord> vae_rec;
  if (decoded == -2 && preview_mode_ == 1)
    for (int k = shown_step_; k >= 0; --k) {
      auto r = job_->record_ptr(k);
      if (r->vae_preview) {
        vae_rec = r, decoded = k, img = &*r->vae_preview;
        break;
      }
    }
  if (views_run_ != run_id_ || views_step_ != shown_step_) view_->show_step(cmd, frame_slot, *rec, cfg.preview);
  if (views_run_ != run_id_ || views_step_ != shown_step_ || views_decoded_ != decoded) {
    if (img) view_->show_decoded(cmd, frame_slot, *img);
    else view_->hide_decoded();
  }
  views_run_ = run_id_, views_step_ = shown_step_, views_decoded_ = decoded;
}

// ---- the frame --------------------------------------------------------------------------------

void ViewerApp::frame(VkCommandBuffer cmd, int frame_slot) {
  poll_loading();
  shoot_now_ = false;
  if (playing_ && job_ && job_->steps_recorded() > 0) {
    play_clock_ += ImGui::GetIO().DeltaTime * play_fps_;
    while (play_clock_ >= 1) {
      play_clock_ -= 1;
      shown_step_ = (shown_step_ + 1) % job_->steps_recorded();
    }
  }
  if (!opts_.screenshot.empty() || !opts_.export_gif.empty() || !opts_.export_png.empty() || opts_.close_at >= 0) script();
  update_views(cmd, frame_slot);
  update_mask_texture(cmd, frame_slot);
  update_panels(cmd, frame_slot);
  shortcuts();

  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(vp->Pos);
  ImGui::SetNextWindowSize(vp->Size);
  ImGui::Begin("vksd", nullptr,
               ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoBringToFrontOnFocus |
                   ImGuiWindowFlags_NoSavedSettings);
  const float status_h = ImGui::GetFrameHeightWithSpacing() * 2.2f;
  ImGui::BeginChild("controls", ImVec2(390, -status_h), true);
  ui_controls();
  ImGui::EndChild();
  ImGui::SameLine();
  ImGui::BeginChild("right", ImVec2(0, -status_h), false);
  const float timeline_h = ImGui::GetFrameHeightWithSpacing() * 5.5f;
  ImGui::BeginChild("canvas", ImVec2(0, -timeline_h), true, ImGuiWindowFlags_HorizontalScrollbar);
  ui_canvas(cmd, frame_slot);
  ImGui::EndChild();
  ImGui::BeginChild("timeline", ImVec2(0, 0), true);
  ui_timeline();
  ImGui::EndChild();
  ImGui::EndChild();
  ui_status();
  ImGui::End();
  draw_panels();
  ui_error_panel();
}

// ---- teaching panels --------------------------------------------------------------------------

PanelFrame ViewerApp::panel_frame(VkCommandBuffer cmd, int frame_slot) {
  PanelFrame f{ctx_, renderer_, win_};
  f.pipe = pipe_.get();
  f.job = job_.get();
  f.shown_step = job_ && job_->steps_recorded() > 0 ? std::clamp(shown_step_, 0, job_->steps_recorded() - 1) : -1;
  if (pipe_) {
    GenerateParams p;
    p.prompt = prompt_, p.negative_prompt = negative_;
    p.width = width_, p.height = height_, p.steps = steps_, p.cfg_scale = cfg_;
    p.sampler = parse_sampler(sampler_names_[(size_t)sampler_]);
    p.seed = seed_ < 0 ? last_seed_ : (uint64_t)seed_;
    p.clip_skip = clip_skip_;
    if (use_init_ && init_image_) p.init_image = *init_image_, p.strength = strength_;
    f.ui_params = std::move(p);
  }
  f.cmd = cmd;
  f.frame_slot = frame_slot;
  f.actions = this;
  return f;
}

void ViewerApp::update_panels(VkCommandBuffer cmd, int frame_slot) {
  profiling_wanted_ = false;  // open panels renew it in update()
  attention_wanted_ = false;
  panels_updated_ = true;
  bool any = false;
  for (auto& p : panels_) any = any || p->open;
  if (!any) return;  // closed panels cost nothing
  PanelFrame f = panel_frame(cmd, frame_slot);
  for (auto& p : panels_)
    if (p->open) p->update(f);
}

void ViewerApp::ui_panel_menu() {
  ImGui::TextUnformatted("Look inside (teaching panels)");
  for (auto& p : panels_) ImGui::Checkbox(p->title(), &p->open);
}

void ViewerApp::draw_panels() {
  PanelFrame f = panel_frame(VK_NULL_HANDLE, 0);
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  const ImVec2 fbs = ImGui::GetIO().DisplayFramebufferScale;
  int k = 0;
  for (auto& p : panels_) {
    p->rect = ImVec4(0, 0, 0, 0);
    if (!p->open) continue;
    // Headless and first use: panels stack over the right part of the canvas.
    ImGui::SetNextWindowPos(ImVec2(vp->Pos.x + vp->Size.x - p->default_size.x - 10 - 24.f * (float)k, vp->Pos.y + 40 + 24.f * (float)k),
                            ImGuiCond_FirstUseEver);
    ImGui::SetNextWindowSize(p->default_size, ImGuiCond_FirstUseEver);
    ++k;
    if (ImGui::Begin(p->title(), &p->open, ImGuiWindowFlags_NoSavedSettings)) p->draw(f);
    const ImVec2 a = ImGui::GetWindowPos(), s = ImGui::GetWindowSize();
    p->rect = ImVec4(a.x * fbs.x, a.y * fbs.y, (a.x + s.x) * fbs.x, (a.y + s.y) * fbs.y);
    ImGui::End();
  }
}

// ---- headless script --------------------------------------------------------------------------

// The scripted run of --screenshot / --export-*: load, generate (pausing or cancelling where
// asked), let the textures settle for a few frames, scrub, export, then shoot and quit.
void ViewerApp::script() {
  auto settle = [&](Phase next) {
    phase_ = next;
    // Frames in flight + one to draw the updated textures; with --stats, a second of idle
    // frames too (their times are the "idle" figures).
    settle_frames_ = next == Phase::Done && !opts_.stats.empty() ? 60 : 4;
  };
  switch (phase_) {
    case Phase::Loading:
      // Also wait for one update_panels(): open panels state their wishes for the run there
      // (want_profiling, want_attention_maps), and the demo model may load before the first frame.
      if (loading_.valid() || !panels_updated_) return;
      if (!pipe_ || !opts_.generate) return settle(Phase::Done);
      phase_ = Phase::Generating;
      generate();
      if (!job_ || job_->state() == JobState::Idle) return settle(Phase::Done);  // bad parameters
      return;
    case Phase::Generating: {
      JobState s = job_->state();
      const int n = job_->steps_recorded();
      if (opts_.close_at >= 0 && n > opts_.close_at) {
        // As if the user closed the window now: the main loop ends and tears everything down
        // while the job is still running.
        glfwSetWindowShouldClose(win_.handle(), GLFW_TRUE);
        return;
      }
      if (opts_.cancel_at >= 0) {
        if (s == JobState::Paused && n > opts_.cancel_at) job_->cancel();
        if (s == JobState::Cancelled || s == JobState::Failed || s == JobState::Done) settle(Phase::Scrub);
        return;
      }
      if (opts_.stop_at >= 0 && s == JobState::Paused && n > opts_.stop_at) return settle(Phase::Scrub);
      // Open panels may run something of their own after the run (the comparison's prompt B).
      bool panels_busy = false;
      for (auto& p : panels_) panels_busy = panels_busy || (p->open && p->busy());
      if ((s == JobState::Done || s == JobState::Cancelled || s == JobState::Failed) && !panels_busy) settle(Phase::Scrub);
      return;
    }
    case Phase::Scrub:
      if (--settle_frames_ > 0) return;
      if (opts_.scrub >= 0 && job_) {
        live_ = false;
        shown_step_ = opts_.scrub;
      }
      if (!opts_.export_gif.empty()) export_gif(opts_.export_gif);
      if (!opts_.export_png.empty()) export_png(opts_.export_png);
      if (message_.rfind("error", 0) == 0) exit_code_ = 1;
      return settle(Phase::Done);
    case Phase::Settle:
    case Phase::Done:
      if (--settle_frames_ > 0) return;
      if (opts_.screenshot.empty()) {
        quit_ = true;
        return;
      }
      shoot_now_ = true;
      return;
  }
}

void ViewerApp::captured(const Image& shot) {
  write_png(opts_.screenshot, shot);
  if (!opts_.layout.empty()) write_layout(opts_.layout);
  if (!opts_.stats.empty()) write_stats(opts_.stats);
  std::fprintf(stderr, "vksd view: wrote %s (%dx%d)\n", opts_.screenshot.c_str(), shot.width, shot.height);
  if (!model_error_.empty()) exit_code_ = 1;
  quit_ = true;
}

static std::string rect_json(const ImVec4& r) {
  char b[96];
  std::snprintf(b, sizeof b, "[%d, %d, %d, %d]", (int)r.x, (int)r.y, (int)r.z, (int)r.w);
  return b;
}

void ViewerApp::write_layout(const std::string& path) const {
  std::string s = "{\n";
  auto field = [&](const char* k, const std::string& v, bool last = false) {
    s += std::string("  \"") + k + "\": " + v + (last ? "\n" : ",\n");
  };
  auto str = [](const std::string& v) { return "\"" + json_escape(v) + "\""; };
  const JobState st = job_ ? job_->state() : JobState::Idle;
  field("state", str(job_state_name(st)));
  field("ui_idle", st == JobState::Running || st == JobState::Paused || loading_.valid() ? "false" : "true");
  field("steps_recorded", std::to_string(job_ ? job_->steps_recorded() : 0));
  field("step_shown", std::to_string(shown_step_));
  field("decoded_shown", view_ && view_->decoded_shown() ? "true" : "false");
  field("image_size", view_ ? "[" + std::to_string(view_->width()) + ", " + std::to_string(view_->height()) + "]" : "null");
  field("x0", rect_json(x0_rect_));
  field("xt", rect_json(xt_rect_));
  field("mask_canvas", rect_json(mask_rect_));
  field("error", str(model_error_));
  field("error_panel", rect_json(error_rect_));
  field("message", str(message_));
  field("seed", std::to_string(last_seed_));
  std::string panels = "{";
  for (auto& p : panels_) {
    if (!p->open) continue;
    PanelFacts facts;
    p->facts(facts);
    panels += std::string(panels.size() > 1 ? ", " : "") + "\"" + p->name() + "\": {\"rect\": " + rect_json(p->rect);
    for (auto& [k, v] : facts) panels += ", \"" + json_escape(k) + "\": " + v;
    panels += "}";
  }
  field("panels", panels + "}", true);
  s += "}\n";
  write_file_atomic(path, s.data(), s.size());
}

static std::string percentiles_json(std::vector<double> v) {
  if (v.empty()) return "null";
  std::sort(v.begin(), v.end());
  auto q = [&](double p) { return v[std::min(v.size() - 1, (size_t)(p * (double)(v.size() - 1) + 0.5))]; };
  char b[160];
  std::snprintf(b, sizeof b, "{\"frames\": %zu, \"median_ms\": %.2f, \"p95_ms\": %.2f, \"max_ms\": %.2f}", v.size(), q(0.5),
                q(0.95), v.back());
  return b;
}

void ViewerApp::write_stats(const std::string& path) const {
  auto res = job_ ? job_->result() : std::nullopt;
  char run[128] = "null";
  if (res) std::snprintf(run, sizeof run, "{\"steps\": %d, \"sample_ms\": %.1f, \"total_ms\": %.1f}", res->steps_run, res->sample_ms, res->total_ms);
  std::string s = "{\n  \"device\": \"" + json_escape(ctx_.info().name) + "\",\n  \"generating\": " +
                  percentiles_json(frame_ms_busy_) + ",\n  \"idle\": " + percentiles_json(frame_ms_idle_) +
                  ",\n  \"run\": " + run + "\n}\n";
  write_file_atomic(path, s.data(), s.size());
}

}  // namespace vksd::view
