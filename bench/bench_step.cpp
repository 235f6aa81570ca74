// `vksd_bench step`: where a sampler step of the embedded demo model's architecture spends
// its time (weights/README.md: UNet model_channels 64, channel_mult [1,2,2], 1 res block,
// attention at the 8x8 and 4x4 levels, 2 heads, context 128; latent 4x8x8 (f = 8), batch 2 for
// classifier-free guidance).
//
//  1. The UNet with random weights in the real key layout (sd1_layout), compiled once with
//     per-dispatch timestamps: top kernels by time, dispatch and barrier counts.
//  2. The same UNet compiled without profiling, as SdPipeline runs it: wall and CPU time per
//     forward (upload x and t, submit, wait, download), split into upload / run / download.
//  3. With --model PATH (and --vocab): SdPipeline end to end, 64x64, 20 steps, guidance 7,
//     after model load: wall and CPU time per stage.
//
// CPU time (getrusage, all of llvmpipe's threads) is reported beside wall time because the
// machine is shared and wall time moves with other people's load.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>
#include <sys/resource.h>

#include "bench/stopwatch.h"
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/gpu/graph.h"
#include "runtime/model/model_config.h"
#include "runtime/nn/unet.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"

using namespace vksd;

namespace {

using Clock = bench::Stopwatch;  // wall and CPU seconds of a stretch of code

UNetConfig demo_unet() {
  UNetConfig u;
  u.model_channels = 64;
  u.channel_mult = {1, 2, 2};
  u.num_res_blocks = 1;
  u.attention_levels = {true, true, false};
  u.num_heads = 2;
  u.context_dim = 128;
  return u;
}

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Random weights of plausible scale (var 1/fan_in; norm gains near 1), so activations stay
// finite and denormal-free like a trained model's.
std::vector<float> random_tensor(const std::string& name, const Shape& shape, uint64_t seed) {
  const size_t n = (size_t)shape_numel(shape);
  const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  double off = 0, amp = std::sqrt(3.0 / (double)(shape_numel(shape) / shape[0]));
  if (shape.size() == 1) off = bias ? 0 : 1, amp = bias ? 0.05 : 0.1;
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (float)(off + amp * ((double)(mix(seed + i) >> 11) * 0x1p-52 - 1.0));
  return v;
}

std::vector<float> random_vec(size_t n, uint64_t seed, double amp) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (float)(amp * ((double)(mix(seed * 7919 + i) >> 11) * 0x1p-52 - 1.0));
  return v;
}

// sd15: the SD 1.5 UNet (UNetConfig's defaults) at batch 1, latent 32x32 (256x256 images),
// instead of the demo architecture at batch 2, latent 8x8.
void unet_profile(Context& ctx, DType dt, int reps, int top, bool sd15) {
  const UNetConfig cfg = sd15 ? UNetConfig{} : demo_unet();
  const int batch = sd15 ? 1 : 2, h = sd15 ? 32 : 8, w = h, ctx_len = 77;
  WeightStore ws(ctx, dt);
  uint64_t seed = 1;
  for (auto& s : unet_layout(cfg)) ws.add(s.name, s.shape, random_tensor(s.name, s.shape, (seed++) << 32).data());
  const auto x = random_vec((size_t)batch * 4 * h * w, 11, 1.0);
  const auto context = random_vec((size_t)batch * ctx_len * cfg.context_dim, 12, 1.0);
  const std::vector<float> t(batch, 500.f);

  // 1. per dispatch
  {
    nn::NetOptions o;
    o.profile = true;
    nn::UNet unet(ctx, ws, cfg, batch, h, w, ctx_len, o);
    unet.set_context(context);
    for (int i = 0; i < 2; ++i) unet.forward(x, t);  // warm-up: shader compilation
    std::map<std::string, std::pair<double, int>> by_kernel;  // label -> (ms, count)
    std::vector<DispatchTiming> each;                           // per dispatch, mean over reps
    double total = 0;
    for (int r = 0; r < reps; ++r) {
      unet.forward(x, t);
      const auto tim = unet.graph().timings();
      if (each.empty()) each.assign(tim.size(), {});
      for (size_t i = 0; i < tim.size(); ++i) {
        each[i].label = tim[i].label;
        each[i].flops = tim[i].flops;
        each[i].ms += tim[i].ms / reps;
      }
      for (auto& d : tim) {
        auto& e = by_kernel[d.label];
        e.first += d.ms / reps;
        if (r == 0) e.second++;
        total += d.ms / reps;
      }
    }
    std::vector<std::pair<std::string, std::pair<double, int>>> rows(by_kernel.begin(), by_kernel.end());
    std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
    std::printf("UNet forward (batch %d, %dx%d latent, %s), profiled: %zu dispatches, sum of dispatch times %.2f ms\n",
                batch, h, w, dtype_name(dt), unet.graph().dispatch_count(), total);
    std::printf("| kernel (label) | dispatches | ms per forward | share |\n|---|---:|---:|---:|\n");
    for (auto& [label, e] : rows)
      std::printf("| %s | %d | %.2f | %.1f%% |\n", label.c_str(), e.second, e.first, 100.0 * e.first / total);
    if (top > 0) {
      std::vector<size_t> order(each.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return each[a].ms > each[b].ms; });
      std::printf("\nslowest dispatches:\n| # | kernel | ms | GFLOP/s |\n|---:|---|---:|---:|\n");
      for (int k = 0; k < top && k < (int)order.size(); ++k) {
        auto& d = each[order[k]];
        std::printf("| %zu | %s | %.3f | %.1f |\n", order[k], d.label.c_str(), d.ms, d.flops / (d.ms * 1e6));
      }
      double small = 0;
      int n_small = 0;
      for (auto& d : each)
        if (d.ms < 0.2) small += d.ms, n_small++;
      std::printf("%d dispatches under 0.2 ms take %.2f ms together\n", n_small, small);
    }
  }
  // 2. as the pipeline runs it
  {
    nn::UNet unet(ctx, ws, cfg, batch, h, w, ctx_len);
    unet.set_context(context);
    for (int i = 0; i < 2; ++i) unet.forward(x, t);
    std::vector<double> walls, cpus;
    for (int r = 0; r < reps; ++r) {
      Clock c;
      unet.forward(x, t);
      walls.push_back(c.wall() * 1e3);
      cpus.push_back(c.cpu() * 1e3);
    }
    std::sort(walls.begin(), walls.end());
    std::sort(cpus.begin(), cpus.end());
    std::printf("\nUNet forward unprofiled: %zu dispatches, %zu barriers; median of %d: %.2f ms wall, %.2f ms CPU "
                "(min %.2f / %.2f)\n",
                unet.graph().dispatch_count(), unet.graph().barrier_count(), reps, walls[reps / 2], cpus[reps / 2],
                walls[0], cpus[0]);
  }
}

struct StepTimer : Observer {
  std::vector<double> step_ms;
  void on_step(const StepEvent& e) override { step_ms.push_back(e.step_ms); }
};

void end_to_end(Context& ctx, const std::string& model, const std::string& vocab, int runs) {
  PipelineOptions po;
  po.model_path = model;
  po.vocab_path = vocab;
  Clock load;
  SdPipeline pipe(ctx, po);
  GenerateParams p;
  p.prompt = "red apple";
  p.width = p.height = 64;
  p.steps = 20;
  p.cfg_scale = 7.0;
  p.seed = 1;
  pipe.generate(p);  // first generate builds the networks and compiles the shaders
  std::printf("\nSdPipeline %s: load + first generate %.2f s wall\n", model.c_str(), load.wall());
  for (int r = 0; r < runs; ++r) {
    StepTimer obs;
    Clock c;
    auto res = pipe.generate(p, &obs);
    double wall = c.wall(), cpu = c.cpu();
    std::sort(obs.step_ms.begin(), obs.step_ms.end());
    std::printf("generate 64x64, 20 steps, guidance 7: %.3f s wall, %.3f s CPU (text %.1f ms, sample %.1f ms, "
                "decode %.1f ms; median step %.2f ms)\n",
                wall, cpu, res.text_ms, res.sample_ms, res.decode_ms, obs.step_ms[obs.step_ms.size() / 2]);
  }
}

}  // namespace

int bench_step_main(int argc, char** argv) {
  DType dt = DType::F16;
  int reps = 10, runs = 2, top = 0;
  bool sd15 = false;
  std::string model, vocab;
  for (int i = 0; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--f32")) dt = DType::F32;
    else if (!std::strcmp(argv[i], "--sd15")) sd15 = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--top") && i + 1 < argc) top = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else if (!std::strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
    else {
      std::fprintf(stderr, "usage: vksd_bench step [--f32] [--sd15] [--reps N] [--top N] [--model PATH [--vocab PATH] [--runs N]]\n");
      return 2;
    }
  }
  try {
    Context ctx;
    std::printf("device: %s\n", ctx.info().name.c_str());
    unet_profile(ctx, dt, reps, top, sd15);
    if (!model.empty()) end_to_end(ctx, model, vocab, runs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vksd_bench step: %s\n", e.what());
    return 1;
  }
  return 0;
}
