// `vksd view`: the viewer (viewer/), a window where you watch the model denoise step by step.
// This file only reads the command line; everything else is in viewer/.
#include <cstdio>
#include <string>

#include "cli/args.h"
#include "cli/command.h"
#include "runtime/diffusion/samplers.h"
#include "viewer/panels/panel.h"
#include "viewer/viewer.h"

namespace {

std::string panel_list() {
  std::string all;
  for (auto& n : vksd::view::panel_names()) all += (all.empty() ? "" : ", ") + n;
  return all.empty() ? "(none yet)" : all;
}

void usage() {
  std::printf(
      "usage: vksd view [options]\n"
      "\n"
      "Opens the viewer: type a prompt, press Generate (Ctrl+Enter) and watch the model turn noise\n"
      "into a picture, step by step: x0-hat (the model's current guess of the clean image) beside\n"
      "x_t (what the sampler holds, noise included). Pause (Space), Step (Right), Resume (Space),\n"
      "Cancel (Esc) at any step; scrub the timeline back and forth or play it; export a GIF of the\n"
      "steps or the final PNG (with the same 'parameters' text as vksd generate).\n"
      "\n"
      "model:\n"
      "  -m, --model PATH        SD 1.x checkpoint or diffusers folder (default: $VKSD_MODEL, else\n"
      "                          the embedded demo model); can be changed in the window\n"
      "      --config FILE       vksd model config JSON (docs/model-config.md)\n"
      "      --vocab FILE        CLIP vocabulary (as for vksd generate)\n"
      "      --fp32              fp32 weights and activations\n"
      "      --lowvram           one network (text encoder, UNet, VAE) on the GPU at a time\n"
      "      --memory-budget MB  device memory a run may use (default: the GPU's); a run that fits\n"
      "                          only one network at a time switches to --lowvram by itself\n"
      "      --lora-dir DIR      where <lora:NAME:WEIGHT> in the prompt finds NAME.safetensors\n"
      "\n"
      "initial settings (all can be changed in the window; same meaning as in vksd generate):\n"
      "  -p, --prompt TEXT   -n, --negative-prompt TEXT   --steps N   --cfg-scale X\n"
      "  --sampler NAME      --seed N   -W, --width N   -H, --height N   --clip-skip N\n"
      "  --init-img FILE     --strength X   --mask FILE\n"
      "      --preview linear|vae  how steps are shown: linear (default; a per-model linear map of\n"
      "                          the latent to RGB, computed on the GPU every step) or vae (the VAE\n"
      "                          decoder every --vae-every steps, on the generation thread)\n"
      "      --vae-every N       default 5\n"
      "      --window WxH        window size (default 1280x800)\n"
      "      --generate          start generating as soon as the model is loaded\n"
      "\n"
      "headless mode (tests and documentation; runs the real UI, e.g. under Xvfb):\n"
      "      --screenshot FILE   write what the window shows to FILE (PNG), then exit. With a\n"
      "                          prompt it generates first; by default the shot is taken when the\n"
      "                          run has finished\n"
      "      --stop-at STEP      pause after step STEP (1-based, as the UI counts) and shoot there\n"
      "      --cancel-at STEP    cancel after step STEP and shoot once the UI is idle again\n"
      "      --scrub STEP        after the run, move the timeline to step STEP, then shoot\n"
      "      --close-at STEP     close the window after step STEP while it is still generating\n"
      "                          (the run is cancelled and everything released; no screenshot)\n"
      "      --export-gif FILE   after the run, export the steps as an animated GIF\n"
      "      --export-png FILE   after the run, export the final image as PNG\n"
      "      --layout FILE       JSON: screen rectangles of the canvas images and the UI state\n"
      "      --stats FILE        JSON: frame times while generating and while idle\n"
      "      --panel NAME        open a teaching panel (repeatable): %s\n"
      "      --panel-set P.K=V   a panel's setting, e.g. attention.token=2 (headless tests)\n",
      panel_list().c_str());
}

// Steps are counted from 1 on the command line and in the window, from 0 in the runtime.
int step_flag(vksd::cli::FlagReader& f) {
  long long v = f.int_val();
  if (v < 1) vksd::fail(f.flag() + " counts steps from 1 (got " + std::to_string(v) + ")");
  return (int)v - 1;
}

int cmd_view(int argc, char** argv) {
  vksd::view::ViewOptions o;
  vksd::cli::FlagReader f(argc, argv);
  while (f.next()) {
    auto is = [&](const char* s, const char* l) { return f.is(s, l); };
    if (is("-h", "--help")) {
      usage();
      return 0;
    } else if (is("-m", "--model")) o.model = f.val();
    else if (is(nullptr, "--config")) o.config = f.val();
    else if (is(nullptr, "--vocab")) o.vocab = f.val();
    else if (is(nullptr, "--lora-dir")) o.lora_dir = f.val();
    else if (f.is_switch("--fp32")) o.fp32 = true;
    else if (f.is_switch("--lowvram")) o.lowvram = true;
    else if (is(nullptr, "--memory-budget")) o.memory_budget_mb = (uint64_t)f.int_in(1, 1ll << 30);
    else if (is("-p", "--prompt")) o.prompt = f.val(), o.prompt_given = true;
    else if (is("-n", "--negative-prompt")) o.negative = f.val();
    else if (is(nullptr, "--steps")) o.steps = (int)f.int_val();
    else if (is(nullptr, "--cfg-scale")) o.cfg = f.num_val();
    else if (is(nullptr, "--sampler")) o.sampler = f.val();
    else if (is(nullptr, "--seed")) o.seed = f.int_val();
    else if (is("-W", "--width")) o.width = (int)f.int_val();
    else if (is("-H", "--height")) o.height = (int)f.int_val();
    else if (is(nullptr, "--clip-skip")) o.clip_skip = (int)f.int_val();
    else if (is(nullptr, "--init-img")) o.init_img = f.val();
    else if (is(nullptr, "--strength")) o.strength = f.num_val();
    else if (is(nullptr, "--mask")) o.mask = f.val();
    else if (is(nullptr, "--preview")) o.preview = f.val();
    else if (is(nullptr, "--vae-every")) o.vae_every = (int)f.int_val();
    else if (is(nullptr, "--window")) {
      std::string v = f.val();
      if (std::sscanf(v.c_str(), "%dx%d", &o.window_width, &o.window_height) != 2 || o.window_width < 200 ||
          o.window_height < 150 || o.window_width > 16384 || o.window_height > 16384)
        vksd::fail("--window wants WIDTHxHEIGHT between 200x150 and 16384x16384, got '" + v + "'");
    } else if (f.is_switch("--generate")) o.generate = true;
    else if (is(nullptr, "--screenshot")) o.screenshot = f.val();
    else if (is(nullptr, "--layout")) o.layout = f.val();
    else if (is(nullptr, "--stop-at")) o.stop_at = step_flag(f);
    else if (is(nullptr, "--cancel-at")) o.cancel_at = step_flag(f);
    else if (is(nullptr, "--scrub")) o.scrub = step_flag(f);
    else if (is(nullptr, "--close-at")) o.close_at = step_flag(f);
    else if (is(nullptr, "--export-gif")) o.export_gif = f.val();
    else if (is(nullptr, "--export-png")) o.export_png = f.val();
    else if (is(nullptr, "--stats")) o.stats = f.val();
    else if (is(nullptr, "--panel")) {
      std::string name = f.val(), all;
      bool known = false;
      for (auto& n : vksd::view::panel_names()) known = known || n == name, all += (all.empty() ? "" : ", ") + n;
      if (!known) vksd::fail("--panel: no panel '" + name + "' (panels: " + all + ")");
      o.panels.push_back(name);
    } else if (is(nullptr, "--panel-set")) {
      std::string v = f.val();
      const size_t dot = v.find('.'), eq = v.find('=');
      if (dot == std::string::npos || eq == std::string::npos || dot > eq)
        vksd::fail("--panel-set wants PANEL.KEY=VALUE, got '" + v + "'");
      o.panel_settings.push_back({v.substr(0, eq), v.substr(eq + 1)});
    }
    else vksd::fail("unknown option '" + f.arg() + "' (see vksd view --help)");
  }
  // Checks that need no window or model.
  if (o.steps < 1) vksd::fail("--steps must be at least 1 (got " + std::to_string(o.steps) + ")");
  if (o.cfg < 0) vksd::fail("--cfg-scale must not be negative");
  if (o.strength < 0 || o.strength > 1) vksd::fail("--strength must be within [0, 1]");
  if (o.seed < -1) vksd::fail("--seed must be -1 (random) or a non-negative integer");
  if (o.preview != "linear" && o.preview != "vae") vksd::fail("--preview must be linear or vae (got '" + o.preview + "')");
  if (o.vae_every < 1) vksd::fail("--vae-every must be at least 1");
  vksd::parse_sampler(o.sampler);
  const bool scripted = o.stop_at >= 0 || o.cancel_at >= 0 || o.scrub >= 0 || o.close_at >= 0 ||
                        !o.export_gif.empty() || !o.export_png.empty();
  if ((o.stop_at >= 0 || o.cancel_at >= 0 || o.scrub >= 0) && o.screenshot.empty())
    vksd::fail("--stop-at, --cancel-at and --scrub belong to the headless mode: add --screenshot FILE");
  if (scripted && !o.prompt_given) vksd::fail("the headless steps (--stop-at, --cancel-at, --scrub, --export-*) need a prompt (-p)");
  for (int s : {o.stop_at, o.cancel_at, o.scrub, o.close_at})
    if (s >= o.steps) vksd::fail("a step given to --stop-at/--cancel-at/--scrub/--close-at is beyond --steps " + std::to_string(o.steps));
  if (scripted || !o.screenshot.empty()) o.generate = o.generate || o.prompt_given;
  return vksd::view::run_viewer(o);
}

}  // namespace

VKSD_COMMAND(view, "open the viewer: watch the denoising live, step by step", cmd_view);
