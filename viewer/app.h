// ViewerApp: the viewer's state and its user interface, one frame at a time. It owns the model
// (loaded on a background thread so the window stays live) and a GenerationJob that runs the
// pipeline off the UI thread; each frame it reads what the job has recorded and shows it.
//
// UI, by file: app.cpp (state, per-frame update, headless script), ui_controls.cpp (the left
// panel: model, prompt, settings, img2img), ui_canvas.cpp (x̂0 and x_t, mask painting),
// ui_timeline.cpp (scrubbing, playback, export), ui_status.cpp (status bar, error panel).
#pragma once
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <imgui.h>

#include "runtime/diffusion/generation_job.h"
#include "runtime/io/image_io.h"
#include "runtime/diffusion/pipeline.h"
#include "viewer/panels/panel.h"
#include "viewer/step_view.h"
#include "viewer/texture.h"
#include "viewer/viewer.h"

namespace vksd {
class Context;
}

namespace vksd::view {

class Window;
class ImGuiRenderer;

class ViewerApp : public PanelActions {
 public:
  ViewerApp(Context& ctx, Window& win, ImGuiRenderer& r, const ViewOptions& o);
  ~ViewerApp();  // cancels a running generation and waits for the worker threads

  // Between ImGui::NewFrame and ImGui::Render: reads the job's progress, records texture
  // updates into `cmd` (outside the render pass) and builds the UI.
  void frame(VkCommandBuffer cmd, int frame_slot);
  // Headless mode: whether the frame just built is the one to write out.
  bool wants_capture() const { return shoot_now_; }
  void captured(const Image& shot);
  bool quit() const { return quit_; }
  int exit_code() const { return exit_code_; }
  // Whether a generation is running (the main loop polls events instead of waiting).
  bool busy() const;
  // Frame time bookkeeping (ms between frames), split by whether a generation was running.
  void note_frame_time(double ms);

  // PanelActions
  bool can_run() const override;
  bool run(const GenerateParams& p, const JobOptions& o) override;
  void want_profiling(bool on) override { profiling_wanted_ = profiling_wanted_ || on; }
  void want_attention_maps(bool on) override { attention_wanted_ = attention_wanted_ || on; }

 private:
  // -- model
  void start_loading();
  void poll_loading();
  // -- generation
  std::optional<GenerateParams> params_from_ui();
  void generate();
  void pause_resume();
  void step_once();
  void cancel();
  void update_views(VkCommandBuffer cmd, int frame_slot);
  // -- UI pieces
  void ui_controls();
  void ui_canvas(VkCommandBuffer cmd, int frame_slot);
  void ui_timeline();
  void ui_status();
  void ui_error_panel();
  void ui_panel_menu();
  void update_panels(VkCommandBuffer cmd, int frame_slot);
  void draw_panels();
  PanelFrame panel_frame(VkCommandBuffer cmd, int frame_slot);
  void shortcuts();
  void load_init_image();
  void update_mask_texture(VkCommandBuffer cmd, int frame_slot);
  void paint_mask(float ix, float iy, bool erase);
  void export_gif(const std::string& path);
  void export_png(const std::string& path);
  // -- headless
  void script();
  void write_layout(const std::string& path) const;
  void write_stats(const std::string& path) const;

  Context& ctx_;
  Window& win_;
  ImGuiRenderer& renderer_;
  ViewOptions opts_;

  // Model: the pipeline and the job that drives it (the job uses the pipeline on its thread).
  std::unique_ptr<SdPipeline> pipe_;
  std::unique_ptr<GenerationJob> job_;
  std::future<std::unique_ptr<SdPipeline>> loading_;
  std::string model_error_;
  bool error_panel_open_ = false;

  // Controls.
  std::string model_path_, vocab_path_, prompt_, negative_;
  long long seed_ = -1;
  int steps_ = 20, sampler_ = 0, width_ = 0, height_ = 0, clip_skip_ = 1;
  float cfg_ = 7.f, strength_ = 0.75f;
  int preview_mode_ = 0, vae_every_ = 5;  // 0 linear (GPU), 1 VAE every N steps
  std::vector<std::string> sampler_names_;
  std::string init_path_, init_error_;
  std::optional<Image> init_image_;
  Image mask_;  // gray, width x height; white = repaint
  bool use_init_ = false, use_mask_ = false, mask_dirty_ = false;
  float brush_ = 6.f;
  std::unique_ptr<Texture> mask_tex_;
  std::string message_;  // last action's result ("wrote x.gif", errors of the controls)

  // What the canvas shows.
  std::unique_ptr<StepView> view_;
  uint64_t run_id_ = 0;
  int shown_step_ = -1;        // timeline position (index into the job's records)
  bool live_ = true;           // follow the newest step
  bool playing_ = false;
  float play_fps_ = 8.f;
  double play_clock_ = 0;
  // The textures' current content, to re-record only on change.
  int views_step_ = -1;
  uint64_t views_run_ = 0;
  int views_decoded_ = -2;     // -1 = final image, k = VAE preview of step k, -2 = none
  int zoom_ = 0;               // 0 = fit
  bool smooth_ = false;        // bilinear latent previews (blocks otherwise)
  std::string gif_path_ = "vksd_steps.gif", png_path_ = "vksd_image.png";
  bool gif_x0_ = true, gif_xt_ = true;
  int gif_fps_ = 8;
  GenerateParams last_params_;
  uint64_t last_seed_ = 0;

  // Where things were drawn (framebuffer pixels), for the headless layout file.
  ImVec4 x0_rect_{}, xt_rect_{}, error_rect_{}, mask_rect_{};

  // Teaching panels (viewer/panels/).
  std::vector<std::unique_ptr<Panel>> panels_;
  bool profiling_wanted_ = false;  // an open panel asked this frame (PanelActions::want_profiling)
  bool attention_wanted_ = false;  // the same for PanelActions::want_attention_maps
  bool panels_updated_ = false;    // update_panels() has run (the headless script waits for it)

  // Frame times.
  std::vector<double> frame_ms_busy_, frame_ms_idle_;

  // Headless script.
  enum class Phase { Loading, Generating, Settle, Scrub, Done };
  Phase phase_ = Phase::Loading;
  int settle_frames_ = 0;
  bool shoot_now_ = false, quit_ = false;
  int exit_code_ = 0;
};

}  // namespace vksd::view
