// The Stable Diffusion benchmark behind `vksd bench`: times the three networks and a whole
// generation on one checkpoint (normally random weights in the exact SD 1.5 architecture,
// random_checkpoint.h), at given image sizes and storage types, and reports per part
//   seconds (min and median over repeats; the first run separately: it creates pipelines and,
//   on lavapipe, JIT-compiles every kernel at its first dispatch), it/s, GFLOP (from the graphs'
//   dispatches) and achieved GFLOP/s, the peak device memory while the part ran, and for the
//   UNet the top kernels by GPU time (timestamp queries).
// Beside them, measured in the same process: the device's best matmul (GFLOP/s, and each
// part's ratio to it), start-up (process start to the first UNet step done, with where that
// time went) and, when a Python with torch is available, PyTorch-CPU on the same UNet loading
// the same checkpoint (bench/torch_unet_bench.py) as a time ratio.
#pragma once
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/gpu/dtype.h"

namespace vksd {

class Context;

struct BenchOptions {
  std::string model_path;   // checkpoint (.safetensors or diffusers folder)
  std::string config_path;  // vksd model config ("" = beside the checkpoint / SD 1.x defaults)
  std::string vocab_path;   // CLIP vocabulary for the generation part ("" = the usual search)
  // Parts, any of: "unet", "text", "vae", "generate", "matmul", "torch".
  std::vector<std::string> parts = {"unet", "text", "vae", "generate", "matmul", "torch"};
  std::vector<int> sizes = {256};                  // image width = height, pixels
  std::vector<DType> dtypes = {DType::F16};        // weight and activation storage
  std::vector<int> unet_batches = {1, 2};          // 2 = one classifier-free-guidance step
  int repeats = 3;                                 // timed runs after the first
  int steps = 20;                                  // generation part: Euler, guidance 7
  int top_kernels = 8;                             // UNet kernels listed (0 = no profiled run)
  int matmul_size = 1024;                          // best-matmul part: n x n x n
  std::string python = "/usr/bin/python3";         // for the torch part
  std::string torch_script;                        // "" = bench/torch_unet_bench.py in the source tree
  int torch_threads = 0;                           // 0 = hardware_concurrency
};

struct KernelTime {
  std::string kernel;  // shader name
  int dispatches = 0;
  double ms = 0, share = 0, gflops = 0;  // GPU ms per forward, share of the forward, GFLOP/s
};

struct BenchRow {
  std::string part;    // "unet", "text", "vae", "generate", "matmul", "torch unet"
  std::string dtype;   // "f16" / "f32"
  int size = 0;        // image pixels (0 where it does not apply: text encoder)
  int batch = 1;
  int steps = 0;       // generate
  double first_s = 0;  // the first run (pipeline creation and JIT included)
  double min_s = 0, median_s = 0;
  std::vector<double> runs_s;
  double gflop = 0;          // per run (0 = not counted)
  double gflops = 0;         // gflop / median_s
  double its = 0;            // iterations per second: UNet steps (unet, generate), else 1/median
  double vs_matmul = 0;      // gflops / best matmul GFLOP/s of the same dtype (0 = unknown)
  double vs_torch = 0;       // torch median / this median (unet rows at f32 and f16; 0 = unknown)
  uint64_t peak_bytes = 0;   // peak device memory while the part ran (all vksd allocations)
  std::vector<KernelTime> top;  // unet batch 1: top kernels by GPU time
  std::string note;          // e.g. why a part was skipped
};

struct StartupTimes {
  double to_first_step_s = 0;  // process start -> first UNet forward done
  double context_s = 0;        // Vulkan instance and device
  double weights_s = 0;        // checkpoint open + UNet weights converted and uploaded
  double compile_s = 0;        // UNet graph build + compile (pipeline creation included)
  double pipelines_s = 0;      // of which creating pipelines (wall, parallel)
  size_t pipelines = 0;        // pipelines created for the UNet
  double first_forward_s = 0;  // first forward (lavapipe JIT-compiles at first dispatch)
  double steady_forward_s = 0; // median later forward, for comparison
};

struct BenchReport {
  std::string date, device, driver, device_type, model, cpu;
  double loadavg[3] = {0, 0, 0};
  int threads = 0;
  std::vector<BenchRow> rows;
  StartupTimes startup;
  std::string torch_version;  // "" = torch part not run or unavailable
  // Pipeline creation over the whole run, by shader: (shader, pipelines, seconds), most first.
  std::vector<std::tuple<std::string, int, double>> pipeline_shaders;
  std::string json() const;
  std::string table() const;  // markdown
};

// Runs the parts; `progress` gets a line per part as it starts (may be empty).
BenchReport run_benchmark(Context& ctx, const BenchOptions& opts,
                          const std::function<void(const std::string&)>& progress = {});

// Where `vksd bench` keeps its random SD 1.5 checkpoint: <user cache dir>/vksd/bench/.
std::string bench_cache_dir();
// The random SD 1.5 checkpoint (fp16 storage) in bench_cache_dir(), written on first use
// (about 2 GiB); `progress` hears about the write.
std::string ensure_random_sd15(const std::function<void(const std::string&)>& progress = {});

// Seconds since this process started (from /proc/self/stat; 0 where unavailable).
double process_uptime_s();

}  // namespace vksd
