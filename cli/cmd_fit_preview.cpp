// `vksd fit-preview`: fits a model's linear latent -> RGB preview map (the model config's
// "preview" section, runtime/diffusion/preview.h) to its own VAE decoder. It generates a few images,
// pairs each final clean latent pixel with the decoded image's mean colour over that pixel's
// f x f block, and solves the least-squares affine map [latent, 1] -> RGB (normal equations, in
// double). It prints the JSON to put into the model config and the fit's mean absolute error in
// 8-bit levels next to the SD 1.x default map's (and a held-out check: fitted on half the
// images, measured on the other half).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "runtime/gpu/context.h"
#include "runtime/model/demo_model.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/preview.h"
#include "runtime/diffusion/samplers.h"

namespace fs = std::filesystem;
using vksd::fail;

namespace {

void usage() {
  std::printf(
      "usage: vksd fit-preview [-m MODEL] [options]\n"
      "\n"
      "Fits the linear latent -> RGB map that step previews use (vksd generate --save-steps, the\n"
      "viewer) to the model's own VAE: generates --samples images, and for every latent pixel\n"
      "solves least squares from the final clean latent (plus a constant) to the decoded image's\n"
      "mean colour over that pixel's block. Prints the \"preview\" section for the model config\n"
      "(docs/model-config.md) and the mean absolute error of the fitted map and of the SD 1.x\n"
      "default map, in 8-bit levels, against the decoded images at latent resolution.\n"
      "\n"
      "  -m, --model PATH   checkpoint (default: $VKSD_MODEL, else the demo model in weights/demo)\n"
      "      --config FILE  vksd model config JSON (default: beside the checkpoint)\n"
      "      --vocab FILE   tokenizer vocabulary (default: as vksd generate finds it)\n"
      "      --samples N    images to generate (default 32; prompts from a fixed list of 32 short\n"
      "                     generic subjects, seeds --seed, --seed + 1, ...)\n"
      "      --steps N      DDIM steps per image (default 20)\n"
      "      --cfg-scale X  guidance (default 5)\n"
      "      --seed N       first seed (default 1)\n"
      "  -W, -H N           image size (default: the model's sample_size)\n"
      "      --fp32         fp32 weights and activations\n");
}

// Short subjects every SD-like model knows, and words of the demo model's emoji captions.
const char* const kPrompts[] = {
    "red apple",         "dog face",      "grinning face",   "blue heart",    "green tree",     "yellow star",
    "sun with face",     "cat face",      "pizza",           "rocket",        "house",          "purple flower",
    "fire",              "snowman",       "red car",         "orange fruit",  "water wave",     "smiling face with sunglasses",
    "thumbs up, dark skin tone", "rainbow", "black circle",  "white flag",    "banana",         "ghost",
    "pink heart",        "brown bear",    "grapes",          "globe showing americas", "lemon",  "waving hand, light skin tone",
    "green frog",        "blue whale"};
constexpr int kPromptCount = (int)(sizeof kPrompts / sizeof kPrompts[0]);

struct Sample {
  std::vector<double> latent;  // [C, h, w]
  std::vector<double> target;  // [3, h, w]: decoded image's block means, 8-bit levels (0..255)
};

// Solves A x = b (n x n, row-major) by Gaussian elimination with partial pivoting.
std::vector<double> solve(std::vector<double> a, std::vector<double> b, int n) {
  for (int k = 0; k < n; ++k) {
    int p = k;
    for (int i = k + 1; i < n; ++i)
      if (std::abs(a[i * n + k]) > std::abs(a[p * n + k])) p = i;
    if (!(std::abs(a[p * n + k]) > 1e-12)) fail("fit-preview: the latents are degenerate (singular normal equations)");
    if (p != k) {
      for (int j = 0; j < n; ++j) std::swap(a[k * n + j], a[p * n + j]);
      std::swap(b[k], b[p]);
    }
    for (int i = k + 1; i < n; ++i) {
      const double f = a[i * n + k] / a[k * n + k];
      for (int j = k; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
      b[i] -= f * b[k];
    }
  }
  std::vector<double> x(n);
  for (int k = n - 1; k >= 0; --k) {
    double s = b[k];
    for (int j = k + 1; j < n; ++j) s -= a[k * n + j] * x[j];
    x[k] = s / a[k * n + k];
  }
  return x;
}

// Least squares [latent_0 .. latent_{C-1}, 1] -> RGB in [-1, 1] over the samples' pixels.
vksd::LatentRgbMap fit(const std::vector<const Sample*>& samples, int channels, size_t plane) {
  const int n = channels + 1;
  std::vector<double> ata((size_t)n * n, 0.0), atb((size_t)n * 3, 0.0);  // atb[k * 3 + c]
  std::vector<double> z(n);
  for (const Sample* s : samples)
    for (size_t i = 0; i < plane; ++i) {
      for (int l = 0; l < channels; ++l) z[l] = s->latent[l * plane + i];
      z[channels] = 1.0;
      for (int a = 0; a < n; ++a) {
        for (int b = 0; b < n; ++b) ata[a * n + b] += z[a] * z[b];
        for (int c = 0; c < 3; ++c) atb[a * 3 + c] += z[a] * (s->target[c * plane + i] / 127.5 - 1.0);
      }
    }
  vksd::LatentRgbMap m;
  m.channels = channels;
  m.weights.assign((size_t)channels * 3, 0.f);
  for (int c = 0; c < 3; ++c) {
    std::vector<double> rhs(n);
    for (int a = 0; a < n; ++a) rhs[a] = atb[a * 3 + c];
    const std::vector<double> x = solve(ata, rhs, n);
    // Rounded to the 6 decimals printed, so that the error reported is the printed map's.
    for (int l = 0; l < channels; ++l) m.weights[(size_t)l * 3 + c] = (float)(std::round(x[l] * 1e6) / 1e6);
    m.bias[c] = (float)(std::round(x[channels] * 1e6) / 1e6);
  }
  return m;
}

// Mean |preview - decoded block mean| over pixels and channels, in 8-bit levels.
double mean_abs_error(const std::vector<const Sample*>& samples, const vksd::LatentRgbMap& m, int h, int w) {
  double sum = 0;
  size_t count = 0;
  const size_t plane = (size_t)h * w;
  for (const Sample* s : samples) {
    const vksd::Image p = vksd::latent_preview(s->latent, h, w, m);
    for (size_t i = 0; i < plane; ++i)
      for (int c = 0; c < 3; ++c) sum += std::abs(p.pixels[i * 3 + c] - s->target[c * plane + i]), ++count;
  }
  return sum / (double)count;
}

std::string map_json(const vksd::LatentRgbMap& m) {
  std::string s = "\"preview\": {\"latent_rgb\": [";
  char buf[64];
  for (int l = 0; l < m.channels; ++l) {
    s += l ? ", [" : "[";
    for (int c = 0; c < 3; ++c) {
      std::snprintf(buf, sizeof buf, "%s%.6f", c ? ", " : "", m.weights[(size_t)l * 3 + c]);
      s += buf;
    }
    s += "]";
  }
  std::snprintf(buf, sizeof buf, "], \"bias\": [%.6f, %.6f, %.6f]}", m.bias[0], m.bias[1], m.bias[2]);
  return s + buf;
}

int cmd_fit_preview(int argc, char** argv) {
  std::string model, config, vocab;
  int samples = 32, steps = 20, width = 0, height = 0;
  double cfg = 5.0;
  long long seed = 1;
  bool fp32 = false;
  vksd::cli::FlagReader f(argc, argv);
  while (f.next()) {
    if (f.is("-h", "--help")) {
      usage();
      return 0;
    } else if (f.is("-m", "--model")) model = f.val();
    else if (f.is(nullptr, "--config")) config = f.val();
    else if (f.is(nullptr, "--vocab")) vocab = f.val();
    else if (f.is(nullptr, "--samples")) samples = (int)f.int_val();
    else if (f.is(nullptr, "--steps")) steps = (int)f.int_val();
    else if (f.is(nullptr, "--cfg-scale")) cfg = f.num_val();
    else if (f.is(nullptr, "--seed")) seed = f.int_val();
    else if (f.is("-W", "--width")) width = (int)f.int_val();
    else if (f.is("-H", "--height")) height = (int)f.int_val();
    else if (f.is_switch("--fp32")) fp32 = true;
    else fail("unknown option '" + f.arg() + "' (see vksd fit-preview --help)");
  }
  if (samples < 2 || samples > 10000) fail("--samples must be 2 .. 10000");
  if (steps < 1 || steps > 1000) fail("--steps must be 1 .. 1000");
  if (seed < 0) fail("--seed must be >= 0");
  if (width < 0 || height < 0) fail("-W/-H must be positive");
  if (model.empty()) model = vksd::default_model_path();
  if (!fs::exists(model)) fail("model not found: " + model);

  vksd::ContextOptions co = vksd::ContextOptions::from_env();
  if (fp32) co.prefer_fp16 = false;
  vksd::Context ctx(co);
  vksd::PipelineOptions po;
  po.model_path = model;
  po.config_path = config;
  po.vocab_path = vocab;
  po.fp32 = fp32;
  vksd::SdPipeline pipe(ctx, po);
  const int channels = pipe.config().vae.embed_dim;
  if (channels > vksd::LatentPreview::kMaxChannels)
    fail("the model has " + std::to_string(channels) + " latent channels; previews support at most " +
         std::to_string(vksd::LatentPreview::kMaxChannels));

  vksd::GenerateParams p;
  p.width = width ? width : pipe.config().sample_size;
  p.height = height ? height : pipe.config().sample_size;
  p.steps = steps;
  p.cfg_scale = cfg;
  p.sampler = vksd::SamplerKind::DDIM;
  std::fprintf(stderr, "model %s on %s: %d images %dx%d, DDIM %d steps, guidance %g\n", pipe.model_name().c_str(),
               ctx.info().name.c_str(), samples, p.width, p.height, steps, cfg);

  std::vector<Sample> data((size_t)samples);
  int h = 0, w = 0;
  for (int k = 0; k < samples; ++k) {
    p.prompt = kPrompts[k % kPromptCount];
    p.seed = (uint64_t)seed + (uint64_t)k;
    const vksd::GenerateResult r = pipe.generate(p);
    const int factor = pipe.config().vae.downsample_factor();
    h = p.height / factor, w = p.width / factor;
    const size_t plane = (size_t)h * w;
    if (r.latent.size() != (size_t)channels * plane) fail("fit-preview: unexpected latent size");
    Sample& s = data[(size_t)k];
    s.latent.assign(r.latent.begin(), r.latent.end());
    s.target.assign(3 * plane, 0.0);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) {
          double sum = 0;
          for (int dy = 0; dy < factor; ++dy)
            for (int dx = 0; dx < factor; ++dx) sum += r.image.at(x * factor + dx, y * factor + dy)[c];
          s.target[c * plane + (size_t)y * w + x] = sum / (factor * factor);
        }
    std::fprintf(stderr, "  %2d/%d  seed %llu  \"%s\"\n", k + 1, samples, (unsigned long long)p.seed, p.prompt.c_str());
  }

  const size_t plane = (size_t)h * w;
  std::vector<const Sample*> all, even, odd;
  for (size_t k = 0; k < data.size(); ++k) {
    all.push_back(&data[k]);
    (k % 2 ? odd : even).push_back(&data[k]);
  }
  const vksd::LatentRgbMap fitted = fit(all, channels, plane);
  const vksd::LatentRgbMap half = fit(even, channels, plane);
  std::printf("mean abs error vs the decoded images at %dx%d (8-bit levels, %zu latent pixels):\n", w, h,
              plane * data.size());
  std::printf("  fitted map                     %6.2f\n", mean_abs_error(all, fitted, h, w));
  std::printf("  held out (fit on even images,  %6.2f\n", mean_abs_error(odd, half, h, w));
  std::printf("    measured on the odd ones)\n");
  if (channels == 4)
    std::printf("  SD 1.x default map             %6.2f\n", mean_abs_error(all, vksd::LatentRgbMap::sd1(), h, w));
  if (pipe.config().preview.channels == channels && pipe.config().preview.weights != vksd::LatentRgbMap::sd1().weights)
    std::printf("  the model config's map now     %6.2f\n", mean_abs_error(all, pipe.config().preview, h, w));
  std::printf("%s\n", map_json(fitted).c_str());
  return 0;
}

}  // namespace

// VKSD_COMMAND needs an identifier; this name has a hyphen.
static ::vksd::cli::Register vksd_cmd_fit_preview({"fit-preview", "fit a model's latent -> RGB preview map to its VAE",
                                                   cmd_fit_preview});
