// The embedded demo model's measured quality (weights/README.md, "Evaluation"), computed here in
// C++ through SdPipeline, in process, the way a user runs the model:
//
//   * 64 training captions (the canonical captions of images k * N / 64, k = 0..63), each
//     generated with DDIM, 20 steps, guidance 5, empty negative prompt, seed 42 (the same
//     initial noise for every caption), at the model's sample_size;
//   * every image, generated or training, is embedded as its 16x16 area-downsampled CIE Lab
//     pixels (sRGB -> linear -> XYZ -> Lab, D65 white; downsampled in sRGB first, exactly as
//     weights/sampling.py lab_features does, so that the numbers match weights/eval.py);
//   * all N training images are ranked by L2 distance to the generated image; the rank of the
//     caption's own image is the number of training images strictly nearer than it.
//
// Required: own image in the top 5 for >= 50% of the captions and in the top 1% (rank <
// ceil(N / 100)) for >= 80% (chance: 0.07% and 1%). Also: the same seed and prompt reproduce
// bit-identically; different captions with the same seed give substantially different images
// (metric below); the time per image is reported (target <= 5 s for 20 guided steps on
// lavapipe, after the model load).
//
// The training images are not in the repository; weights/export.py writes their captions and
// quantised Lab features to weights/demo/eval_set.bin (format in weights/README.md). The test
// skips with a message while weights/demo/ does not exist (the model is trained separately);
// VKSD_DEMO_DIR points it at another export (e.g. a smoke run's), and then it must exist.
// VKSD_DEMO_EVAL_OUT=DIR also writes the generated images as DIR/000.png .. 063.png, which
// `weights/eval.py --images DIR` scores independently.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/model/demo_model.h"
#include "runtime/gpu/dtype.h"
#include "runtime/io/image_io.h"
#include "runtime/diffusion/pipeline.h"
#include "tests/test_util.h"

using namespace vksd;
namespace fs = std::filesystem;

namespace {

constexpr int kFeatureSize = 16;  // features: 16 x 16 Lab pixels
constexpr int kEvalPrompts = 64, kSteps = 20;
constexpr double kGuidance = 5.0;
constexpr uint64_t kSeed = 42;

// ---- features ---------------------------------------------------------------------------------

// sRGB (IEC 61966-2-1) decoding of a [0, 1] value.
double srgb_to_linear(double c) { return c <= 0.04045 ? c / 12.92 : std::pow((c + 0.055) / 1.055, 2.4); }

// Linear sRGB -> CIE L*a*b* relative to the D65 white (0.95047, 1, 1.08883).
void linear_rgb_to_lab(const double rgb[3], double lab[3]) {
  const double m[3][3] = {{0.4124564, 0.3575761, 0.1804375},  // linear sRGB -> XYZ (D65)
                          {0.2126729, 0.7151522, 0.0721750},
                          {0.0193339, 0.1191920, 0.9503041}};
  const double white[3] = {0.95047, 1.0, 1.08883};
  double f[3];
  for (int i = 0; i < 3; ++i) {
    const double t = (m[i][0] * rgb[0] + m[i][1] * rgb[1] + m[i][2] * rgb[2]) / white[i];
    const double d = 6.0 / 29.0;  // CIE: cube root above (6/29)^3, the linear segment below
    f[i] = t > d * d * d ? std::cbrt(t) : t / (3 * d * d) + 4.0 / 29.0;
  }
  lab[0] = 116 * f[1] - 16;
  lab[1] = 500 * (f[0] - f[1]);
  lab[2] = 200 * (f[1] - f[2]);
}

// An 8-bit RGB image -> size x size Lab pixels, [y][x][L a b] flattened: each output pixel is
// the mean of its block of sRGB values (area downsampling), then converted.
std::vector<double> lab_features(const Image& im, int size = kFeatureSize) {
  REQUIRE(im.channels == 3);
  REQUIRE(im.width % size == 0);
  REQUIRE(im.height % size == 0);
  const int bw = im.width / size, bh = im.height / size;
  std::vector<double> out((size_t)size * size * 3);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      double rgb[3] = {0, 0, 0};
      for (int dy = 0; dy < bh; ++dy)
        for (int dx = 0; dx < bw; ++dx)
          for (int c = 0; c < 3; ++c) rgb[c] += im.at(x * bw + dx, y * bh + dy)[c];
      for (double& v : rgb) v = srgb_to_linear(v / (255.0 * bw * bh));
      linear_rgb_to_lab(rgb, &out[((size_t)y * size + x) * 3]);
    }
  return out;
}

Image solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  Image im(w, h, 3);
  for (int i = 0; i < w * h; ++i) im.pixels[3 * i] = r, im.pixels[3 * i + 1] = g, im.pixels[3 * i + 2] = b;
  return im;
}

// Mean over pixels of the Euclidean Lab distance (CIE76 colour difference, Delta E*ab).
double mean_delta_e(const double* a, const double* b, int pixels) {
  double s = 0;
  for (int i = 0; i < pixels; ++i)
    s += std::sqrt((a[3 * i] - b[3 * i]) * (a[3 * i] - b[3 * i]) + (a[3 * i + 1] - b[3 * i + 1]) * (a[3 * i + 1] - b[3 * i + 1]) +
                   (a[3 * i + 2] - b[3 * i + 2]) * (a[3 * i + 2] - b[3 * i + 2]));
  return s / pixels;
}

// ---- weights/demo/eval_set.bin ---------------------------------------------------------------------

struct EvalSet {
  int images = 0, size = 0;
  std::vector<int> eval_index;        // the evaluation captions' image indices
  std::vector<std::string> captions;  // per training image
  std::vector<double> features;       // images x size*size*3, dequantised
  const double* feature(int i) const { return features.data() + (size_t)i * size * size * 3; }
};

// Little-endian reader over the decompressed payload; running past the end fails the test.
struct Reader {
  const std::vector<uint8_t>& b;
  size_t pos = 0;
  const uint8_t* take(size_t n) {
    REQUIRE_MESSAGE(pos + n <= b.size(), "eval_set.bin: payload ends early");
    pos += n;
    return b.data() + pos - n;
  }
  uint32_t u32() {
    const uint8_t* p = take(4);
    return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
  }
  uint16_t u16() {
    const uint8_t* p = take(2);
    return (uint16_t)(p[0] | p[1] << 8);
  }
  float f32() {
    uint32_t u = u32();
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

EvalSet read_eval_set(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), path << " is missing: re-export the model with weights/export.py (it writes eval_set.bin)");
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(f)), {});
  REQUIRE_MESSAGE(file.size() > 12, path << ": too short");
  REQUIRE_MESSAGE(std::memcmp(file.data(), "VKSDEVL1", 8) == 0, path << ": not an eval set (magic)");
  const uLongf want = file[8] | file[9] << 8 | file[10] << 16 | (uLongf)file[11] << 24;
  std::vector<uint8_t> raw(want);
  uLongf got = want;
  REQUIRE_MESSAGE(uncompress(raw.data(), &got, file.data() + 12, (uLong)(file.size() - 12)) == Z_OK,
                  path << ": zlib stream is corrupt");
  REQUIRE(got == want);

  Reader r{raw};
  EvalSet s;
  s.images = (int)r.u32();
  s.size = (int)r.u32();
  const uint32_t n_eval = r.u32();
  REQUIRE(s.images > 0);
  REQUIRE(s.size == kFeatureSize);
  float scale[3], offset[3];
  for (int c = 0; c < 3; ++c) scale[c] = r.f32(), offset[c] = r.f32();
  for (uint32_t i = 0; i < n_eval; ++i) {
    s.eval_index.push_back((int)r.u32());
    REQUIRE(s.eval_index.back() < s.images);
  }
  for (int i = 0; i < s.images; ++i) {
    const uint16_t n = r.u16();
    const uint8_t* p = r.take(n);
    s.captions.emplace_back((const char*)p, n);
  }
  const size_t count = (size_t)s.images * s.size * s.size * 3;
  const uint8_t* q = r.take(count);
  REQUIRE_MESSAGE(r.pos == raw.size(), path << ": " << raw.size() - r.pos << " unexpected trailing bytes");
  s.features.resize(count);
  for (size_t i = 0; i < count; ++i) s.features[i] = q[i] * (double)scale[i % 3] + offset[i % 3];
  return s;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

}  // namespace

TEST_CASE("demo model: Lab features are the CIE formulas (published sRGB primaries, downsampling in sRGB)") {
  // sRGB primaries and white in CIE Lab (D65), as published (e.g. Bruce Lindbloom's calculator).
  struct Case {
    uint8_t r, g, b;
    double L, a, bb;
  } cases[] = {{255, 0, 0, 53.2408, 80.0925, 67.2032},
               {0, 255, 0, 87.7347, -86.1827, 83.1793},
               {0, 0, 255, 32.2970, 79.1875, -107.8602},
               {255, 255, 255, 100.0, 0.0, 0.0},
               {0, 0, 0, 0.0, 0.0, 0.0},
               {128, 128, 128, 53.5850, 0.0, 0.0}};
  for (const Case& c : cases) {
    INFO("sRGB " << (int)c.r << " " << (int)c.g << " " << (int)c.b);
    const auto f = lab_features(solid(32, 32, c.r, c.g, c.b));
    REQUIRE(f.size() == 16 * 16 * 3);
    for (size_t i = 0; i < f.size(); i += 3) {  // every output pixel equal
      CHECK(std::abs(f[i] - c.L) < 1e-4);
      CHECK(std::abs(f[i + 1] - c.a) < 1e-4);
      CHECK(std::abs(f[i + 2] - c.bb) < 1e-4);
    }
  }
  // A black/white checkerboard averages to sRGB 127.5/255 per 2x2 block BEFORE the conversion
  // (as weights/sampling.py does), which is L* 53.389; averaging Lab instead would give 50.
  Image checker(32, 32, 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      if ((x + y) % 2 == 0) std::memset(checker.at(x, y), 255, 3);
  const double lin = std::pow((0.5 + 0.055) / 1.055, 2.4);
  const double L = 116 * std::cbrt(lin * (0.2126729 + 0.7151522 + 0.0721750)) - 16;  // Y of grey = lin x row sum
  CHECK(L == doctest::Approx(53.389).epsilon(1e-4));
  const auto f = lab_features(checker);
  for (size_t i = 0; i < f.size(); i += 3) CHECK(std::abs(f[i] - L) < 1e-9);
}

TEST_CASE("demo model: prompt following (top-5 >= 50%, top-1% >= 80%), bit-identical reruns, distinct captions, time per image") {
  const char* env_dir = std::getenv("VKSD_DEMO_DIR");
  const bool explicit_dir = env_dir && *env_dir;
  const fs::path dir = explicit_dir ? fs::path(env_dir) : fs::path(VKSD_SOURCE_DIR) / kDemoModelDir;
  if (!fs::exists(dir / "model.safetensors")) {
    REQUIRE_MESSAGE(!explicit_dir, "VKSD_DEMO_DIR=" << env_dir << " holds no model.safetensors");
    MESSAGE("skipped: the demo model is not trained yet (" << (dir / "model.safetensors").string()
                                                           << " is missing; weights/README.md says how to make it)");
    return;
  }
  const EvalSet set = read_eval_set((dir / "eval_set.bin").string());
  // The protocol's caption selection (weights/eval.py eval_prompts), checked, not trusted.
  REQUIRE(set.eval_index.size() == (size_t)kEvalPrompts);
  for (int k = 0; k < kEvalPrompts; ++k) CHECK(set.eval_index[(size_t)k] == k * set.images / kEvalPrompts);

  // The model as a user gets it: no vocabulary, config or size given (model.json names them).
  PipelineOptions opts;
  opts.model_path = (dir / "model.safetensors").string();
  const auto t_load = std::chrono::steady_clock::now();
  SdPipeline pipe(test::ctx(), opts);
  const int size = pipe.config().sample_size;
  REQUIRE(size % kFeatureSize == 0);

  GenerateParams p;
  p.width = p.height = size;
  p.steps = kSteps;
  p.cfg_scale = kGuidance;
  p.sampler = SamplerKind::DDIM;
  p.seed = kSeed;
  const char* out_dir = std::getenv("VKSD_DEMO_EVAL_OUT");
  if (out_dir && *out_dir) fs::create_directories(out_dir);

  const int pixels = kFeatureSize * kFeatureSize;
  const int need = (int)std::ceil(set.images / 100.0);  // top 1%
  std::vector<int> ranks;
  std::vector<std::vector<double>> gen_features;
  std::vector<Image> images;
  std::vector<double> ms, cpu_s;
  double first_ms = 0;
  GenerateResult first;
  for (int k = 0; k < kEvalPrompts; ++k) {
    const int own = set.eval_index[(size_t)k];
    p.prompt = set.captions[(size_t)own];
    const double c0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    GenerateResult res = pipe.generate(p);
    const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - (k ? t0 : t_load)).count();
    if (k == 0) first_ms = wall;  // includes the network loads and the shaders' first compilation
    else ms.push_back(wall), cpu_s.push_back(cpu_seconds() - c0);
    REQUIRE(res.image.width == size);
    REQUIRE(res.image.height == size);
    if (out_dir && *out_dir) {
      char name[16];
      std::snprintf(name, sizeof name, "%03d.png", k);
      write_png((fs::path(out_dir) / name).string(), res.image, {{"parameters", res.parameters}});
    }
    auto g = lab_features(res.image);
    std::vector<double> d((size_t)set.images);
    for (int i = 0; i < set.images; ++i) {
      const double* t = set.feature(i);
      double s = 0;
      for (int j = 0; j < pixels * 3; ++j) s += (g[(size_t)j] - t[j]) * (g[(size_t)j] - t[j]);
      d[(size_t)i] = s;
    }
    ranks.push_back((int)std::count_if(d.begin(), d.end(), [&](double v) { return v < d[(size_t)own]; }));
    gen_features.push_back(std::move(g));
    images.push_back(res.image);
    if (k == 0) first = std::move(res);
  }

  // Same seed and prompt again: bit-identical raw decoder output and image.
  p.prompt = set.captions[(size_t)set.eval_index[0]];
  const GenerateResult again = pipe.generate(p);
  const bool identical = again.pixels.size() == first.pixels.size() &&
                         std::memcmp(again.pixels.data(), first.pixels.data(), first.pixels.size() * sizeof(float)) == 0 &&
                         again.image.pixels == first.image.pixels;

  // Different captions, same seed: mean CIE76 Delta E over the 16x16 Lab pixels between the images
  // of neighbouring evaluation captions (k, k+1 mod 64), compared with the same measure between
  // their TRAINING images. A model that ignored the prompt would give 0 (same seed, same noise);
  // one that follows it reproduces the training set's caption-to-caption variation (ratio ~1).
  // Required: at least half of it. Reported alongside: the mean absolute 8-bit pixel difference.
  double de_gen = 0, de_train = 0, mad = 0;
  for (int k = 0; k < kEvalPrompts; ++k) {
    const int k2 = (k + 1) % kEvalPrompts;
    de_gen += mean_delta_e(gen_features[(size_t)k].data(), gen_features[(size_t)k2].data(), pixels);
    de_train += mean_delta_e(set.feature(set.eval_index[(size_t)k]), set.feature(set.eval_index[(size_t)k2]), pixels);
    double s = 0;
    for (size_t i = 0; i < images[(size_t)k].pixels.size(); ++i)
      s += std::abs((int)images[(size_t)k].pixels[i] - (int)images[(size_t)k2].pixels[i]);
    mad += s / (double)images[(size_t)k].pixels.size();
  }
  de_gen /= kEvalPrompts, de_train /= kEvalPrompts, mad /= kEvalPrompts;

  std::vector<int> sorted = ranks;
  std::sort(sorted.begin(), sorted.end());
  const int top5 = (int)std::count_if(ranks.begin(), ranks.end(), [](int r) { return r < 5; });
  const int top1pct = (int)std::count_if(ranks.begin(), ranks.end(), [&](int r) { return r < need; });
  double mean_rank = 0;
  for (int r : ranks) mean_rank += r;
  mean_rank /= (double)ranks.size();
  std::sort(ms.begin(), ms.end());
  double mean_ms = 0, mean_cpu = 0;
  for (double v : ms) mean_ms += v / (double)ms.size();
  for (double v : cpu_s) mean_cpu += v / (double)cpu_s.size();
  std::string rank_list;
  for (int r : ranks) rank_list += std::to_string(r) + " ";

  MESSAGE(dir.string() << " (" << pipe.model_name() << ", " << std::string(dtype_name(pipe.dtype())) << ", " << size << "x" << size
                       << "), " << set.images << " training images:\n"
                       << "  top-5 rate " << top5 << "/" << kEvalPrompts << " = " << 100.0 * top5 / kEvalPrompts
                       << "% (need >= 50%; chance " << 500.0 / set.images << "%)\n"
                       << "  top-1% rate (rank < " << need << ") " << top1pct << "/" << kEvalPrompts << " = "
                       << 100.0 * top1pct / kEvalPrompts << "% (need >= 80%; chance 1%)\n"
                       << "  median rank " << 0.5 * (sorted[31] + sorted[32]) << ", mean rank " << mean_rank << "\n"
                       << "  ranks: " << rank_list << "\n"
                       << "  neighbouring captions, same seed: mean Delta E " << de_gen << " (training images: " << de_train
                       << ", ratio " << de_gen / de_train << ", need >= 0.5); mean |pixel difference| " << mad << "/255\n"
                       << "  rerun with the same seed and prompt bit-identical: " << std::string(identical ? "yes" : "NO") << "\n"
                       << "  time per image (" << kSteps << " steps, guidance " << kGuidance << ", after the model load): mean "
                       << mean_ms / 1000 << " s, median " << ms[ms.size() / 2] / 1000 << " s, max " << ms.back() / 1000
                       << " s; process CPU " << mean_cpu << " s per image; first image incl. load " << first_ms / 1000
                       << " s (target <= 5 s per image)");

  CHECK(identical);
  CHECK(de_gen >= 0.5 * de_train);
  CHECK(top5 * 2 >= kEvalPrompts);       // >= 50%
  CHECK(top1pct * 5 >= 4 * kEvalPrompts);  // >= 80%
  // Wall time on a shared CPU (and with the validation layer) is not the device's speed: the
  // target is reported and warned about, not asserted.
  WARN_MESSAGE(mean_ms <= 5000, "mean time per image " << mean_ms / 1000 << " s exceeds the 5 s target");
  CHECK(test::ctx().validation_messages() == 0);
}
