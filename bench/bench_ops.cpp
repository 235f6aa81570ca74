// vksd_bench: per-op timings at Stable Diffusion 1.5 shapes.
// Each case is its own graph of one op, compiled with profiling (per-dispatch timestamps);
// it runs `warmup` times first (lavapipe compiles a shader at its first dispatch) and then
// reports the median of `reps` runs. Throughput is GFLOP/s for compute-bound ops and GB/s
// (bytes read + written once) for memory-bound ones; "vs best mm" is the ratio to the fastest
// matmul measured in the same run.
//
//   vksd_bench [--f16] [--reps N] [--filter SUBSTR] [--list]
//   vksd_bench step ...   (bench_step.cpp: the demo model's sampler step, profiled)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>
#include <sys/resource.h>
#include <thread>

#include "bench/stopwatch.h"
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/gpu/graph.h"
#include "runtime/ops.h"

using namespace vksd;

namespace {

struct Case {
  std::string name;
  bool is_matmul = false;  // contributes to "best matmul"
  bool memory_bound = false;
  // Builds the op on g from inputs made with Bench::input; returns the output. `bytes` is
  // set for memory-bound ops (bytes moved); flops come from the dispatches.
  std::function<Tensor(struct Bench& b)> build;
};

// What a case builder gets: the graph, the storage type, and a place to note inputs and bytes.
struct Bench {
  Graph& g;
  DType dt;
  double bytes = 0;  // memory-bound ops: bytes read + written once
  double flops = 0;  // ops whose dispatches do not count their flops
  std::vector<Tensor> inputs;
  Tensor input(const Shape& s, DType t) {
    Tensor x = g.input(s, t);
    inputs.push_back(x);
    return x;
  }
  Tensor input(const Shape& s) { return input(s, dt); }
};

struct Result {
  std::string name;
  double ms = 0, gflops = 0, gbs = 0;
  // The same per CPU-second of this process x cores: what the op would reach with the
  // machine to itself, robust to other load sharing the cores.
  double cpu_gflops = 0, cpu_gbs = 0;
  bool is_matmul = false, memory_bound = false;
  VkDeviceSize peak = 0;
  size_t dispatches = 0;
};

std::vector<float> random_data(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, 0.5f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

using bench::process_cpu_seconds;  // all threads, llvmpipe's workers included

Result run_case(Context& ctx, const Case& c, DType dt, int reps) {
  Graph g(ctx);
  Bench b{g, dt};
  Tensor y = c.build(b);
  double bytes = b.bytes;
  g.keep(y);
  g.compile(/*profile=*/true);
  // Fill every input with data (denormals or NaNs in uninitialised memory could skew timings).
  for (Tensor t : b.inputs) {
    if (t.dtype() == DType::I32) {
      std::vector<int32_t> v((size_t)t.numel(), 1);
      g.upload_i32(t, v.data());
    } else {
      g.upload(t, random_data((size_t)t.numel(), t.id));
    }
  }
  for (int i = 0; i < 2; ++i) g.run();  // warm-up: shader compilation happens here
  std::vector<double> ms;
  double flops = 0;
  double cpu0 = process_cpu_seconds();
  for (int r = 0; r < reps; ++r) {
    g.run();
    double t = 0;
    flops = 0;
    for (auto& d : g.timings()) {
      t += d.ms;
      flops += d.flops;
    }
    ms.push_back(t);
  }
  double cpu_per_run = (process_cpu_seconds() - cpu0) / reps;
  if (flops == 0) flops = b.flops;
  std::sort(ms.begin(), ms.end());
  Result res;
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  res.cpu_gflops = flops > 0 && cpu_per_run > 0 ? flops / (cpu_per_run / cores * 1e9) : 0;
  res.cpu_gbs = bytes > 0 && cpu_per_run > 0 ? bytes / (cpu_per_run / cores * 1e9) : 0;
  res.name = c.name;
  res.ms = ms[ms.size() / 2];
  res.gflops = flops > 0 ? flops / (res.ms * 1e6) : 0;
  res.gbs = bytes > 0 ? bytes / (res.ms * 1e6) : 0;
  res.is_matmul = c.is_matmul;
  res.memory_bound = c.memory_bound;
  res.peak = g.peak_bytes();
  res.dispatches = g.dispatch_count();
  return res;
}

std::string fmt1(double v) {
  if (v <= 0) return "";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

std::vector<Case> make_cases() {
  std::vector<Case> cs;
  auto mm = [&](const char* name, int64_t B, int64_t M, int64_t K, int64_t N, bool trans_b) {
    cs.push_back({name, true, false, [=](Bench& bn) {
                    Tensor a = bn.input({B, M, K});
                    Tensor b = bn.input(trans_b ? Shape{B, N, K} : Shape{B, K, N});
                    return ops::matmul(a, b, trans_b);
                  }});
  };
  auto lin = [&](const char* name, int64_t M, int64_t K, int64_t N) {
    cs.push_back({name, true, false, [=](Bench& bn) {
                    Tensor x = bn.input({M, K}), w = bn.input({N, K}), b = bn.input({N});
                    return ops::linear(x, w, b);
                  }});
  };
  auto conv = [&](const char* name, int64_t Ci, int64_t H, int64_t Co, int64_t k, ops::Conv2d p, bool resid) {
    cs.push_back({name, false, false, [=](Bench& bn) {
                    Tensor x = bn.input({1, Ci, H, H}), w = bn.input({Co, Ci, k, k}), b = bn.input({Co});
                    if (!resid) return ops::conv2d(x, w, b, p);
                    int64_t Ho = (H + p.pad_top + p.pad_bottom - k) / p.stride + 1;
                    Tensor r = bn.input({1, Co, Ho, Ho});
                    return ops::conv2d(x, w, b, p, r);
                  }});
  };
  mm("matmul 1024^3 (nt)", 1, 1024, 1024, 1024, true);
  mm("matmul 1024^3 (nn)", 1, 1024, 1024, 1024, false);
  lin("linear GEGLU proj [8192,320]->2560", 2 * 4096, 320, 2560);
  lin("linear attn q/k/v [8192,320]->320", 2 * 4096, 320, 320);
  lin("linear FF out [8192,1280]->320", 2 * 4096, 1280, 320);
  lin("linear FF out [512,5120]->1280", 2 * 256, 5120, 1280);
  lin("linear cross k/v [154,768]->320", 2 * 77, 768, 320);
  conv("conv3x3 320->320 @64x64", 320, 64, 320, 3, ops::Conv2d::same(3), false);
  conv("conv3x3 320->320 @64x64 +resid", 320, 64, 320, 3, ops::Conv2d::same(3), true);
  conv("conv3x3 2560->1280 @8x8", 2560, 8, 1280, 3, ops::Conv2d::same(3), false);
  conv("conv3x3 4->320 @64x64 (conv_in)", 4, 64, 320, 3, ops::Conv2d::same(3), false);
  conv("conv3x3 s2 640 @32x32 (Downsample)", 640, 32, 640, 3, ops::Conv2d::down(), false);
  conv("conv3x3 128->128 @512x512 (VAE)", 128, 512, 128, 3, ops::Conv2d::same(3), false);
  // SD 1.5 at 256x256 (latent 32x32, batch 1): the UNet's deep levels.
  conv("sd256 conv3x3 1280->1280 @4x4", 1280, 4, 1280, 3, ops::Conv2d::same(3), false);
  conv("sd256 conv3x3 2560->1280 @4x4", 2560, 4, 1280, 3, ops::Conv2d::same(3), false);
  conv("sd256 conv3x3 1280->1280 @8x8", 1280, 8, 1280, 3, ops::Conv2d::same(3), false);
  conv("sd256 conv3x3 640->640 @16x16", 640, 16, 640, 3, ops::Conv2d::same(3), false);
  conv("sd256 conv3x3 320->320 @32x32", 320, 32, 320, 3, ops::Conv2d::same(3), false);
  conv("conv1x1 512->512 @64x64", 512, 64, 512, 1, ops::Conv2d::same(1), false);
  conv("conv1x1 2560->1280 @8x8", 2560, 8, 1280, 1, ops::Conv2d::same(1), false);
  conv("conv1x1 640->320 @64x64", 640, 64, 320, 1, ops::Conv2d::same(1), false);
  // Ops written by others (norm.comp, attention.comp, geglu): same harness.
  auto attn = [&](const char* name, int64_t Lq, int64_t Lk, int64_t heads, int64_t D) {
    cs.push_back({name, false, false, [=](Bench& bn) {
                    Tensor q = bn.input({1, Lq, heads * D}), k = bn.input({1, Lk, heads * D}),
                           v = bn.input({1, Lk, heads * D});
                    bn.flops = 4.0 * heads * Lq * Lk * D;  // q·kᵀ and p·v
                    return ops::attention(q, k, v, (int)heads);
                  }});
  };
  attn("self-attention 8h x 4096 x 40", 4096, 4096, 8, 40);
  attn("cross-attention 8h 4096x77 x 40", 4096, 77, 8, 40);
  attn("sd256 self-attention 8h x 1024 x 40", 1024, 1024, 8, 40);
  attn("sd256 self-attention 8h x 256 x 80", 256, 256, 8, 80);
  attn("sd256 cross-attention 8h 1024x77 x 40", 1024, 77, 8, 40);
  attn("VAE attention 1h x 4096 x 512", 4096, 4096, 1, 512);
  cs.push_back({"group_norm 128ch @512x512 (32 groups)", false, true, [](Bench& bn) {
                  Tensor x = bn.input({1, 128, 512, 512}), g = bn.input({128}), b = bn.input({128});
                  bn.bytes = 2.0 * x.numel() * dtype_size(bn.dt);
                  return ops::group_norm(x, g, b, 32, 1e-6f, false);
                }});
  cs.push_back({"group_norm+SiLU 320ch @64x64", false, true, [](Bench& bn) {
                  Tensor x = bn.input({2, 320, 64, 64}), g = bn.input({320}), b = bn.input({320});
                  bn.bytes = 2.0 * x.numel() * dtype_size(bn.dt);
                  return ops::group_norm(x, g, b, 32, 1e-5f, true);
                }});
  cs.push_back({"layer_norm [8192, 320]", false, true, [](Bench& bn) {
                  Tensor x = bn.input({2 * 4096, 320}), g = bn.input({320}), b = bn.input({320});
                  bn.bytes = 2.0 * x.numel() * dtype_size(bn.dt);
                  return ops::layer_norm(x, g, b, 1e-5f);
                }});
  cs.push_back({"geglu [8192, 2560] -> 1280", false, true, [](Bench& bn) {
                  Tensor x = bn.input({2 * 4096, 2560});
                  bn.bytes = 1.5 * x.numel() * dtype_size(bn.dt);
                  return ops::geglu(x);
                }});
  return cs;
}

}  // namespace

int bench_step_main(int argc, char** argv);  // bench_step.cpp
int bench_load_main(int argc, char** argv);  // bench_load.cpp

int main(int argc, char** argv) {
  if (argc > 1 && !std::strcmp(argv[1], "step")) return bench_step_main(argc - 2, argv + 2);
  if (argc > 1 && !std::strcmp(argv[1], "load")) return bench_load_main(argc - 2, argv + 2);
  DType dt = DType::F32;
  int reps = 5;
  std::string filter;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--f16")) dt = DType::F16;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
    else if (!std::strcmp(argv[i], "--list")) list = true;
    else {
      std::fprintf(stderr, "usage: vksd_bench [--f16] [--reps N] [--filter SUBSTR] [--list]\n");
      return 2;
    }
  }
  try {
    auto cases = make_cases();
    if (list) {
      for (auto& c : cases) std::printf("%s\n", c.name.c_str());
      return 0;
    }
    Context ctx;
    const auto& info = ctx.info();
    std::printf("device: %s (%s), storage %s, %d timed runs after 2 warm-up runs (median)\n", info.name.c_str(),
                info.driver.c_str(), dtype_name(dt), reps);
    std::vector<Result> results;
    for (auto& c : cases) {
      if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
      try {
        results.push_back(run_case(ctx, c, dt, reps));
      } catch (const Error& e) {
        std::printf("%-40s  skipped: %s\n", c.name.c_str(), e.what());
      }
      std::fflush(stdout);
    }
    double best_mm = 0, best_mm_cpu = 0;
    for (auto& r : results)
      if (r.is_matmul) {
        best_mm = std::max(best_mm, r.gflops);
        best_mm_cpu = std::max(best_mm_cpu, r.cpu_gflops);
      }
    auto ratio = [](double v, double best) {
      char b[32] = "";
      if (v > 0 && best > 0) std::snprintf(b, sizeof b, "%.2f", v / best);
      return std::string(b);
    };
    std::printf("\n| op | ms | GFLOP/s | GB/s | vs best mm | per CPU time: GFLOP/s | GB/s | vs best mm | peak MiB |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (auto& r : results)
      std::printf("| %s | %.2f | %s | %s | %s | %s | %s | %s | %.1f |\n", r.name.c_str(), r.ms,
                  fmt1(r.gflops).c_str(), fmt1(r.gbs).c_str(), ratio(r.gflops, best_mm).c_str(),
                  fmt1(r.cpu_gflops).c_str(), fmt1(r.cpu_gbs).c_str(), ratio(r.cpu_gflops, best_mm_cpu).c_str(),
                  (double)r.peak / (1 << 20));
    std::printf("\nbest matmul: %.1f GFLOP/s wall-clock, %.1f GFLOP/s per CPU time\n", best_mm, best_mm_cpu);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vksd_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
