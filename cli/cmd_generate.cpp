// `vksd generate`: text-to-image, image-to-image and inpainting from the command line, with
// flags in the style of stable-diffusion.cpp / AUTOMATIC1111. Every argument is checked before
// the model is loaded, so a typo costs milliseconds, not a model load.
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/run_report.h"
#include "cli/command.h"
#include "cli/from_png.h"
#include "cli/generate_checks.h"
#include "cli/interrupt.h"
#include "cli/prompt_check.h"
#include "cli/size_flags.h"
#include "runtime/diffusion/step_frames.h"
#include "runtime/gpu/context.h"
#include "runtime/model/demo_model.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/io/json.h"
#include "runtime/diffusion/init_images.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/rng.h"
#include "runtime/diffusion/samplers.h"

namespace fs = std::filesystem;
using vksd::fail;
using namespace vksd::cli;  // flag limits

namespace {

void usage() {
  std::printf(
      "usage: vksd generate -p PROMPT [options]\n"
      "\n"
      "Makes an image from a text prompt with a Stable Diffusion 1.x model: the prompt is encoded\n"
      "by CLIP, a latent of pure noise (from --seed) is denoised step by step by the UNet, and the\n"
      "VAE turns the final latent into pixels. With --init-img it starts from your picture instead\n"
      "(image-to-image), with --mask too it repaints only the white part (inpainting).\n"
      "\n"
      "model:\n"
      "  -m, --model PATH        SD 1.x / 2.x checkpoint: a .safetensors file (original layout, e.g.\n"
      "                          v1-5-pruned-emaonly.safetensors) or a diffusers folder\n"
      "                          (default: $VKSD_MODEL, else the demo model in weights/demo)\n"
      "      --config FILE       vksd model config JSON for what the weights cannot tell (head\n"
      "                          counts, schedule, v-prediction; see docs/model-config.md)\n"
      "      --prediction eps|v  what the UNet predicts (default: the model config's, else eps);\n"
      "                          SD 2.x 768-v single files need v (the file does not say it)\n"
      "      --vocab FILE        CLIP vocabulary bpe_simple_vocab_16e6.txt.gz or tokenizer/vocab.json\n"
      "                          (default: the model config's tokenizer.vocab, then beside the\n"
      "                          model, then $VKSD_VOCAB)\n"
      "\n"
      "what to draw:\n"
      "  -p, --prompt TEXT       what the image should show. (word) or (word:1.3) gives a word\n"
      "                          more weight, [word] less; BREAK starts a new 75-token chunk\n"
      "      --from-png FILE     re-run an image: its A1111 'parameters' (prompt, negative prompt,\n"
      "                          steps, sampler, CFG scale, seed, size, clip skip) are the defaults,\n"
      "                          flags given as well override them\n"
      "      --strict            refuse A1111 prompt syntax vksd does not implement (<hypernet:...>,\n"
      "                          [a:b:0.5] prompt editing, [a|b] alternation, AND) instead of warning\n"
      "  -n, --negative-prompt TEXT\n"
      "                          what it should not show (replaces the empty prompt that guidance\n"
      "                          steers away from)\n"
      "  -W, --width N           image width in pixels, a multiple of 8 (SD 1.x: of 64); default: the\n"
      "                          model's sample_size (512 for SD 1.x, 64 for the demo model)\n"
      "  -H, --height N          image height, likewise; SD 1.x was trained at 512x512 and repeats\n"
      "                          subjects at much larger sizes\n"
      "  --lora FILE:WEIGHT      merge a LoRA (.safetensors, kohya or diffusers/PEFT keys, LoCon conv\n"
      "                          layers too) into the UNet and text encoder with this weight\n"
      "                          (e.g. 0.8; \":WEIGHT\" may be left out for 1); repeatable\n"
      "      --lora-dir DIR      where <lora:NAME:WEIGHT> in the prompt finds NAME.safetensors\n"
      "                          (A1111 syntax; the tag is removed from the text CLIP sees)\n"
      "\n"
      "how to draw it:\n"
      "      --steps N           denoising steps (default 20). More steps refine detail, with\n"
      "                          diminishing returns; lcm models need only 2-8\n"
      "      --cfg-scale X       classifier-free guidance (default 7): how strongly the image follows\n"
      "                          the prompt. 1 turns guidance off (half the UNet work, looser\n"
      "                          images); 5-9 is usual; high values oversaturate\n"
      "      --sampler NAME      how the noise is walked down (default euler_a):\n"
      "                            euler            deterministic, first order, a good default\n"
      "                            euler_a          adds fresh noise every step: varied, soft; does\n"
      "                                             not converge to one image as steps grow\n"
      "                            dpm++2m          second order multistep: sharp in 15-25 steps\n"
      "                            dpm++2m_karras   the same on Karras' noise levels: best at few steps\n"
      "                            ddim             the original SD sampler; deterministic at --eta 0\n"
      "                            ddpm             ancestral DDPM; needs many steps (100+)\n"
      "                            lcm              for Latent Consistency (LCM / LCM-LoRA) models\n"
      "      --scheduler NAME    noise-level spacing apart from the sampler (A1111 1.9+, sd.cpp):\n"
      "                          karras (dpm++2m only) or discrete (default). --sampler also takes\n"
      "                          A1111's names (\"Euler a\", \"DPM++ 2M Karras\") and --sampling-method\n"
      "      --eta X             noise added per step by ddim (default 0) and euler_a (default 1)\n"
      "      --timestep-spacing S\n"
      "                          which timesteps the steps visit: leading, trailing (SD-Turbo and\n"
      "                          other few-step models: step 1 starts from pure noise), linspace;\n"
      "                          default: the model config's, else the sampler's own\n"
      "  -s, --seed N            the starting noise (default -1 = random). The same seed, prompt\n"
      "                          and settings give the same image; noise is PyTorch-CPU compatible,\n"
      "                          so seeds match other tools that use CPU noise\n"
      "      --clip-skip N       use CLIP's N-th layer from the end (default 1; 2 for some anime\n"
      "                          fine-tunes)\n"
      "  -b, --batch-count N     make N images with seeds seed, seed+1, ... (default 1)\n"
      "      --original-size WxH, --target-size WxH, --crop-coords TOP,LEFT\n"
      "                          SDXL's size conditioning (default: the image size, crop 0,0);\n"
      "                          other models ignore them\n"
      "\n"
      "image to image and inpainting:\n"
      "      --init-img FILE     start from this picture (PNG/JPEG/...); its size (down to multiples\n"
      "                          of 8) becomes the output size unless -W/-H are given\n"
      "      --resize-mode M     how a picture or mask of another size is fitted (A1111's modes):\n"
      "                          just-resize (default; stretch), crop (cover, crop the overflow),\n"
      "                          fill (fit inside, stretch the edge pixels into the bands)\n"
      "      --strength X        how much of the picture is repainted, 0..1 (default 0.75): 0 keeps\n"
      "                          it, 1 ignores it; only the last strength x steps are run\n"
      "      --mask FILE         inpainting: white = repaint, black = keep (fitted like the image).\n"
      "                          Inpainting models (9-channel UNet) see the mask directly; others\n"
      "                          re-impose the kept part after every step\n"
      "\n"
      "output:\n"
      "  -o, --output FILE       PNG to write (default output.png); with --batch-count N > 1 the\n"
      "                          files are FILE-stem_0.png ... The generation parameters are stored\n"
      "                          in the PNG's 'parameters' text chunk, readable by A1111's PNG info\n"
      "      --save-steps DIR    also write every step: step_NNN_x0.png (the model's guess of the\n"
      "                          final image at that step), step_NNN_xt.png (the noisy latent) and\n"
      "                          contact_sheet.png (a column per step labelled with step, t and\n"
      "                          sigma; top row x_t, bottom row x0). Written as each step happens\n"
      "      --save-steps-every N  keep every N-th step (and the last) in DIR and the sheet (default 1)\n"
      "      --preview FILE      rewrite FILE (PNG) with the current x0 guess as the run goes\n"
      "      --preview-interval N  every N steps (default 1)\n"
      "      --step-preview M    how --save-steps renders latents: approx (default; the model's\n"
      "                          linear latent -> RGB map, instant; SD 1.x's unless the model\n"
      "                          config has a preview section), vae (x0 exact, one VAE decode per\n"
      "                          step) or vae-all (x_t through the VAE too)\n"
      "      --json              machine-readable progress: one JSON object per line on stdout\n"
      "  -v, --verbose           one line per step (t, sigma, time) also on a terminal, instead of the bar\n"
      "\n"
      "memory and precision:\n"
      "      --lowvram           keep only one network (text encoder, UNet, VAE) on the GPU at a time;\n"
      "                          with it, VAE tiling turns on by itself when the image has more\n"
      "                          pixels than one tile (512x512 for SD 1.x)\n"
      "      --vae-tiling        decode (and encode) with the VAE in overlapping tiles blended\n"
      "                          together: the VAE's memory is that of one tile whatever the image\n"
      "                          size, at a small cost in exactness (no visible seams)\n"
      "      --vae-tile-size N   tile edge in latent pixels (default 64 = 512 image pixels for\n"
      "                          SD 1.x); neighbouring tiles overlap by at least N/4\n"
      "      --memory-budget MB  refuse a run estimated to need more device memory than this (default:\n"
      "                          $VKSD_MEMORY_BUDGET_MB, else the GPU's memory); one that fits with\n"
      "                          one network at a time switches to --lowvram by itself (a note says so)\n"
      "      --fp32              fp32 weights and activations (default fp16 storage where supported,\n"
      "                          always fp32 arithmetic): twice the memory, reference-exact results\n"
      "      --vae-fp16          fp16 VAE activations also for a model whose VAE overflows fp16 (SDXL's\n"
      "                          VAE runs with fp32 activations by default): for an fp16-fixed VAE\n"
      "\n"
      "environment: VKSD_DEVICE picks the GPU (see vksd devices), VKSD_VALIDATION=1 enables the\n"
      "Vulkan validation layer.\n");
}

struct Args {
  std::string model, config, vocab, prediction, prompt, negative, output = "output.png", init_img, mask, save_steps;
  std::string sampler = "euler_a", scheduler, step_preview = "approx", spacing;
  std::optional<int> width, height;
  int steps = 20, batch_count = 1, clip_skip = 1;
  double cfg = 7.0, eta = -1, strength = 0.75;
  bool strength_given = false, prompt_given = false;
  long long seed = -1;
  bool lowvram = false, fp32 = false, json = false, vae_tiling = false, strict = false, verbose = false;
  bool vae_fp16 = false;
  int vae_tile = 64;
  uint64_t memory_budget_mb = 0;  // 0 = VKSD_MEMORY_BUDGET_MB, else the device's memory
  int save_steps_every = 1, preview_interval = 1;
  std::string preview, resize_mode = "just-resize";
  std::vector<std::string> loras;  // --lora FILE[:WEIGHT], as given
  std::string lora_dir;
  vksd::cli::SizeFlags size;
};

Args parse(int argc, char** argv, bool& help) {
  Args a;
  vksd::cli::FlagReader f(argc, argv);
  while (f.next()) {
    auto is = [&](const char* s, const char* l) { return f.is(s, l); };
    if (is("-h", "--help")) {
      help = true;
      return a;
    } else if (is("-m", "--model")) a.model = f.val();
    else if (is(nullptr, "--config")) a.config = f.val();
    else if (is(nullptr, "--vocab")) a.vocab = f.val();
    else if (is(nullptr, "--prediction")) a.prediction = f.val();
    else if (is("-p", "--prompt")) a.prompt = f.val(), a.prompt_given = true;
    else if (is("-n", "--negative-prompt")) a.negative = f.val();
    else if (is("-W", "--width")) a.width = (int)f.int_in(INT_MIN, kMaxWidthHeight);
    else if (is("-H", "--height")) a.height = (int)f.int_in(INT_MIN, kMaxWidthHeight);
    else if (is(nullptr, "--steps")) a.steps = (int)f.int_in(INT_MIN, kMaxSteps);
    else if (is(nullptr, "--cfg-scale")) a.cfg = f.num_val();
    else if (is(nullptr, "--sampler") || is(nullptr, "--sampling-method")) a.sampler = f.val();
    else if (is(nullptr, "--scheduler") || is(nullptr, "--schedule")) a.scheduler = f.val();
    else if (is(nullptr, "--eta")) a.eta = f.num_val();
    else if (is(nullptr, "--timestep-spacing")) a.spacing = f.val();
    else if (is("-s", "--seed")) a.seed = f.int_val();
    else if (is("-o", "--output")) a.output = f.val();
    else if (is("-b", "--batch-count")) a.batch_count = (int)f.int_in(INT_MIN, kMaxBatchCount);
    else if (is(nullptr, "--init-img")) a.init_img = f.val();
    else if (is(nullptr, "--strength")) a.strength = f.num_val(), a.strength_given = true;
    else if (is(nullptr, "--mask")) a.mask = f.val();
    else if (is(nullptr, "--resize-mode")) a.resize_mode = f.val();
    else if (is(nullptr, "--clip-skip")) a.clip_skip = (int)f.int_in(INT_MIN, kMaxClipSkip);
    else if (is(nullptr, "--original-size")) a.size.original_size = f.val();
    else if (is(nullptr, "--target-size")) a.size.target_size = f.val();
    else if (is(nullptr, "--crop-coords")) a.size.crop_coords = f.val();
    else if (is(nullptr, "--save-steps")) a.save_steps = f.val();
    else if (is(nullptr, "--step-preview")) a.step_preview = f.val();
    else if (is(nullptr, "--save-steps-every")) a.save_steps_every = (int)f.int_val();
    else if (is(nullptr, "--preview")) a.preview = f.val();
    else if (is(nullptr, "--preview-interval")) a.preview_interval = (int)f.int_val();
    else if (f.is_switch("--lowvram")) a.lowvram = true;
    else if (f.is_switch("--fp32")) a.fp32 = true;
    else if (f.is_switch("--vae-fp16")) a.vae_fp16 = true;
    else if (f.is_switch("--vae-tiling")) a.vae_tiling = true;
    else if (is(nullptr, "--vae-tile-size")) a.vae_tile = (int)f.int_in(INT_MIN, kMaxVaeTile);
    else if (f.is_switch("--json")) a.json = true;
    else if (is(nullptr, "--memory-budget")) a.memory_budget_mb = (uint64_t)f.int_in(1, 1ll << 30);
    else if (f.is_switch("--strict")) a.strict = true;
    else if (f.is_switch("--verbose") || f.is_switch("-v")) a.verbose = true;
    else if (is(nullptr, "--lora")) a.loras.push_back(f.val());
    else if (is(nullptr, "--lora-dir")) a.lora_dir = f.val();
    else fail("unknown option '" + f.arg() + "' (see vksd generate --help)");
  }
  return a;
}

// Checks that need no files, in the order a user would fix them.
void check_args(const Args& a) {
  if (!a.prompt_given) fail("no prompt: give one with -p \"a photograph of ...\" (see vksd generate --help)");
  for (auto [name, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
    if (v && (*v <= 0 || *v % 8 != 0)) fail(std::string(name) + " must be a positive multiple of 8 (got " + std::to_string(*v) + ")");
  if (a.steps < 1) fail("--steps must be at least 1 (got " + std::to_string(a.steps) + ")");
  if (a.cfg < 0) fail("--cfg-scale must not be negative (got " + std::to_string(a.cfg) + "); 1 disables guidance");
  if (a.strength < 0 || a.strength > 1) fail("--strength must be within [0, 1] (got " + std::to_string(a.strength) + ")");
  if (a.strength_given && a.init_img.empty()) fail("--strength needs --init-img (the picture to start from)");
  if (!a.mask.empty() && a.init_img.empty()) fail("--mask needs --init-img (the picture to inpaint)");
  if (a.eta != -1 && a.eta < 0) fail("--eta must not be negative");
  if (a.batch_count < 1) fail("--batch-count must be at least 1");
  if (a.clip_skip < 1) fail("--clip-skip must be at least 1 (1 = the last layer)");
  if (a.seed < -1 || a.seed > 0xffffffffffffll) fail("--seed must be -1 (random) or a non-negative integer");
  if (a.step_preview != "approx" && a.step_preview != "vae" && a.step_preview != "vae-all")
    fail("--step-preview must be approx, vae or vae-all");
  vksd::parse_resize_mode(a.resize_mode);
  if (a.save_steps_every < 1) fail("--save-steps-every must be at least 1");
  if (a.preview_interval < 1) fail("--preview-interval must be at least 1");
  if (!a.preview.empty() && fs::path(a.preview).extension() != ".png") fail("--preview must name a .png file (got '" + a.preview + "')");
  if (a.vae_tile < 4) fail("--vae-tile-size must be at least 4 latent pixels (got " + std::to_string(a.vae_tile) + ")");
  vksd::apply_scheduler(vksd::parse_sampler(a.sampler), a.scheduler);  // unknown names list the valid ones
  vksd::parse_timestep_spacing(a.spacing);
  if (fs::path(a.output).extension() != ".png") fail("--output must name a .png file (got '" + a.output + "')");
}

// --lora FILE:WEIGHT (the weight after the last ':' when it is a number, else 1).
std::vector<vksd::LoraRef> lora_refs(const Args& a) {
  std::vector<vksd::LoraRef> r;
  for (const std::string& v : a.loras) {
    vksd::LoraRef l{v, 1.0};
    const size_t c = v.rfind(':');
    if (c != std::string::npos && !fs::exists(v)) {
      l.path = v.substr(0, c);
      l.weight = vksd::cli::parse_num("--lora " + v + ": the weight", v.substr(c + 1));
    }
    if (!fs::is_regular_file(l.path)) fail("--lora: file not found: " + l.path);
    r.push_back(l);
  }
  return r;
}

std::string output_path(const Args& a, int index) {
  if (a.batch_count == 1) return a.output;
  fs::path p(a.output);
  return (p.parent_path() / (p.stem().string() + "_" + std::to_string(index) + ".png")).string();
}

std::string fmt_time(double s) {
  char b[32];
  int t = (int)std::lround(std::max(0.0, s));
  std::snprintf(b, sizeof b, "%d:%02d", t / 60, t % 60);
  return b;
}

// Progress, step dumps and JSON events for one image.
class CliObserver : public vksd::Observer {
 public:
  CliObserver(const Args& a, int image_index, int width, int height, const vksd::LatentRgbMap& preview_map)
      : a_(a), index_(image_index), tty_(isatty(fileno(stderr)) && !a.json),
        frames_(frame_options(a, image_index), preview_map, width, height) {}

  bool cancelled() override { return vksd::cli::interrupt_signal() != 0; }  // SIGINT/SIGTERM

  void on_stage(const std::string& stage) override {
    if (a_.json) {
      std::printf("{\"event\":\"stage\",\"image\":%d,\"stage\":\"%s\"}\n", index_, vksd::json_escape(stage).c_str());
      std::fflush(stdout);
    } else {
      // On a terminal too: the stage lines stay above the progress bar (which ends its line).
      std::fprintf(stderr, "%s\n", stage.c_str());
    }
    if (stage == "sample") start_ = std::chrono::steady_clock::now();
  }

  void on_notice(const std::string& text) override {
    if (a_.json) {
      std::printf("{\"event\":\"notice\",\"image\":%d,\"text\":\"%s\"}\n", index_, vksd::json_escape(text).c_str());
      std::fflush(stdout);
    } else {
      std::fprintf(stderr, "note: %s\n", text.c_str());
    }
  }

  void on_step(const vksd::StepEvent& e) override {
    const int done = e.index + 1 - first_index(e);
    const int total = e.count - first_index(e);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double its = done / std::max(elapsed, 1e-9);
    const double eta = (total - done) / std::max(its, 1e-9);
    if (a_.json) {
      std::printf("{\"event\":\"step\",\"image\":%d,\"step\":%d,\"steps\":%d,\"t\":%.4f,\"sigma\":%.6f,\"ms\":%.1f}\n", index_,
                  done, total, e.t, e.sigma, e.step_ms);
      std::fflush(stdout);
    } else if (tty_ && !a_.verbose) {
      const int bar = 30, filled = total ? bar * done / total : bar;
      const std::string which =
          a_.batch_count > 1 ? "image " + std::to_string(index_ + 1) + "/" + std::to_string(a_.batch_count) + " " : "";
      std::fprintf(stderr, "\r  %s[%s%s] %d/%d  %.2f it/s  ETA %s   ", which.c_str(), std::string((size_t)filled, '=').c_str(),
                   std::string((size_t)(bar - filled), ' ').c_str(), done, total, its, fmt_time(eta).c_str());
      if (done == total) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "step %d/%d  t=%.2f sigma=%.4f  %.0f ms\n", done, total, e.t, e.sigma, e.step_ms);
    }
    std::fflush(stderr);
    frames_.on_step(e, done, total);  // written now: an interrupted run keeps its frames
  }

  // After the run: the VAE step images (--step-preview vae) and the contact sheet.
  void save_steps(vksd::SdPipeline& pipe) { frames_.finish(pipe); }

 private:
  static vksd::StepFrameOptions frame_options(const Args& a, int index) {
    vksd::StepFrameOptions o;
    o.dir = a.save_steps;
    o.prefix = a.batch_count > 1 ? "img" + std::to_string(index) + "_" : "";
    o.vae = a.step_preview == "vae" || a.step_preview == "vae-all";
    o.vae_xt = a.step_preview == "vae-all";
    o.every = a.save_steps_every;
    o.preview = a.preview;
    o.preview_interval = a.preview_interval;
    return o;
  }
  int first_index(const vksd::StepEvent& e) {
    if (first_ < 0) first_ = e.index;
    return first_;
  }
  const Args& a_;
  int index_;
  bool tty_;
  int first_ = -1;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  vksd::StepFrames frames_;
};

int cmd_generate(int argc_in, char** argv_in) {
  // --from-png FILE: the image's own parameters first, so that explicit flags override them.
  std::vector<std::string> args = vksd::cli::expand_from_png(argc_in, argv_in);
  std::vector<char*> argv_vec;
  for (auto& s : args) argv_vec.push_back(s.data());
  argv_vec.push_back(nullptr);
  const int argc = (int)args.size();
  char** argv = argv_vec.data();
  bool help = false;
  Args a = parse(argc, argv, help);
  if (help) {
    usage();
    return 0;
  }
  check_args(a);
  vksd::cli::install_interrupt_handlers();
  vksd::cli::check_prompt_syntax(a.prompt, a.negative, a.strict, a.json);

  // Files, before the (slow) model load.
  const std::string model = vksd::resolve_model_path(a.model);
  if (!a.prediction.empty() && a.prediction != "eps" && a.prediction != "v" && a.prediction != "epsilon" &&
      a.prediction != "v_prediction")
    fail("--prediction wants eps or v, got '" + a.prediction + "'");
  vksd::cli::GenerateFiles files{model, a.config, a.vocab, a.init_img, a.mask, {}, a.save_steps};
  for (int i = 0; i < a.batch_count; ++i) files.outputs.push_back(output_path(a, i));
  vksd::cli::check_input_files(files);
  vksd::cli::check_output_files(files);
  vksd::GenerateParams p;
  if (!a.init_img.empty()) p.init_image = vksd::read_image(a.init_img, 3);
  // Without -W/-H: the init image's size (down to multiples of 8), else the model's sample_size
  // (known once it is open). An init image or mask of another size is fitted by --resize-mode.
  p.width = a.width.value_or(p.init_image ? p.init_image->width / 8 * 8 : 0);
  p.height = a.height.value_or(p.init_image ? p.init_image->height / 8 * 8 : 0);
  if (p.init_image && (p.width == 0 || p.height == 0))
    fail("--init-img is " + std::to_string(p.init_image->width) + "x" + std::to_string(p.init_image->height) +
         ": too small (give -W and -H to enlarge it)");
  if (!a.mask.empty()) p.mask = vksd::read_image(a.mask, 1);
  for (auto [img, what] : {std::pair{&p.init_image, "--init-img"}, std::pair{&p.mask, "--mask"}})
    if (auto note = vksd::fit_init_image(*img, what, p.width, p.height, vksd::parse_resize_mode(a.resize_mode)); !note.empty() && !a.json)
      std::fprintf(stderr, "%s\n", note.c_str());

  p.prompt = a.prompt;
  p.negative_prompt = a.negative;
  p.steps = a.steps;
  p.cfg_scale = a.cfg;
  p.sampler = vksd::apply_scheduler(vksd::parse_sampler(a.sampler), a.scheduler);
  p.eta = a.eta;
  p.spacing = vksd::parse_timestep_spacing(a.spacing);
  p.clip_skip = a.clip_skip;
  vksd::cli::apply_size_flags(a.size, p);
  p.strength = a.strength;
  p.loras = lora_refs(a);
  if (!a.lora_dir.empty() && !fs::is_directory(a.lora_dir)) fail("--lora-dir is not a folder: " + a.lora_dir);
  const uint64_t seed0 = a.seed < 0 ? vksd::random_seed() : (uint64_t)a.seed;

  vksd::ContextOptions co = vksd::ContextOptions::from_env();
  if (a.fp32) co.prefer_fp16 = false;
  vksd::Context ctx(co);
  vksd::PipelineOptions po;
  po.model_path = model;
  po.config_path = a.config;
  po.vocab_path = a.vocab;
  po.prediction = a.prediction;
  po.fp32 = a.fp32;
  po.vae_fp16 = a.vae_fp16;
  po.lowvram = a.lowvram;
  if (a.vae_tiling) po.vae_tiling = vksd::PipelineOptions::VaeTiling::On;
  po.vae_tile = a.vae_tile;
  po.memory_budget_mb = a.memory_budget_mb;
  po.vae_tile_overlap = a.vae_tile / 4;
  po.lora_dir = a.lora_dir;
  auto t0 = std::chrono::steady_clock::now();
  vksd::SdPipeline pipe(ctx, po);
  if (!p.init_image) {
    if (!a.width) p.width = pipe.config().sample_size;
    if (!a.height) p.height = pipe.config().sample_size;
  }
  if (!a.json) {
    std::fprintf(stderr, "model %s on %s (%s)\n", pipe.model_name().c_str(), ctx.info().name.c_str(),
                 vksd::dtype_name(pipe.dtype()));
    if (pipe.vae_tiled(p.width, p.height))
      std::fprintf(stderr, "VAE tiling: tiles of %d latent pixels, overlap >= %d\n", po.vae_tile, po.vae_tile_overlap);
  }

  std::vector<std::pair<std::string, uint64_t>> stage_peaks;  // of the last image
  for (int i = 0; i < a.batch_count; ++i) {
    p.seed = seed0 + (uint64_t)i;
    CliObserver obs(a, i, p.width, p.height, pipe.config().preview);
    auto res = pipe.generate(p, &obs);
    stage_peaks = res.stage_peaks;
    const std::string path = output_path(a, i);
    vksd::write_png(path, res.image, {{"parameters", res.parameters}});
    obs.save_steps(pipe);
    if (a.json) {
      std::printf(
          "{\"event\":\"done\",\"image\":%d,\"path\":\"%s\",\"seed\":%llu,\"steps\":%d,\"text_ms\":%.1f,"
          "\"sample_ms\":%.1f,\"decode_ms\":%.1f,\"total_ms\":%.1f,\"parameters\":\"%s\"}\n",
          i, vksd::json_escape(path).c_str(), (unsigned long long)res.seed, res.steps_run, res.text_ms, res.sample_ms,
          res.decode_ms, res.total_ms, vksd::json_escape(res.parameters).c_str());
      std::fflush(stdout);
    } else {
      std::fprintf(stderr, "wrote %s (seed %llu, %d steps, %.1f s: text %.2f s, sampling %.2f s, decode %.2f s)\n",
                   path.c_str(), (unsigned long long)res.seed, res.steps_run, res.total_ms / 1000, res.text_ms / 1000,
                   res.sample_ms / 1000, res.decode_ms / 1000);
    }
  }
  vksd::cli::report_run(ctx, pipe, p, model, a.verbose && !a.json, stage_peaks);
  if (!a.json)
    std::fprintf(stderr, "done in %.1f s\n",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace

VKSD_COMMAND(generate, "make images from a prompt (txt2img, img2img, inpainting)", cmd_generate);
