// `vksd view`: the viewer's entry point and its options. The viewer is a client of the runtime
// like the CLI: it drives a GenerationJob (runtime/diffusion/generation_job.h) and shows what the job
// reports; it never reaches inside the pipeline.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vksd::view {

struct ViewOptions {
  // Model (default: $VKSD_MODEL, else the embedded demo model).
  std::string model, config, vocab;
  std::string lora_dir;  // where the prompt's <lora:NAME:W> finds NAME.safetensors
  bool fp32 = false;
  bool lowvram = false;          // one network on the GPU at a time (PipelineOptions::lowvram)
  uint64_t memory_budget_mb = 0;  // 0: $VKSD_MEMORY_BUDGET_MB, else the device's memory
  // Initial settings of the controls.
  std::string prompt, negative;
  bool prompt_given = false;
  int steps = 20;
  double cfg = 7.0;
  std::string sampler = "euler_a";
  long long seed = -1;             // -1: random
  int width = 0, height = 0;       // 0: the model's sample_size
  int clip_skip = 1;
  std::string init_img, mask;
  double strength = 0.75;
  std::string preview = "linear";  // "linear" (GPU latent -> RGB map) or "vae" (decoder every N steps)
  int vae_every = 5;
  int window_width = 1280, window_height = 800;

  // Headless mode (tests, docs): run the real UI, act as scripted, write what the window shows.
  std::string screenshot;     // PNG of the window
  std::string layout;         // JSON: where the canvas items are and what the UI state is
  int stop_at = -1;           // pause after this step (0-based) and take the screenshot there
  int cancel_at = -1;         // cancel after this step, take the screenshot once the UI is idle
  int scrub = -1;             // after the run, move the timeline to this step (0-based)
  int close_at = -1;          // close the window after this step, mid-generation (exit test)
  std::string export_gif, export_png;  // after the run, export through the UI's export code
  std::string stats;          // JSON: frame times while generating and while idle
  bool generate = false;      // start generating at once (implied by --screenshot with -p)
  std::vector<std::string> panels;  // teaching panels to open (--panel NAME)
  std::vector<std::pair<std::string, std::string>> panel_settings;  // --panel-set NAME.KEY=VALUE
};

// Opens the window and runs until it is closed (or, headless, until the screenshot is written).
// Returns the process exit code.
int run_viewer(const ViewOptions& o);

}  // namespace vksd::view
