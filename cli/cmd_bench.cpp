// `vksd bench`: Stable Diffusion speed and memory on this device (runtime/bench/benchmark.h).
// Without -m it benchmarks a random-weight checkpoint with the exact SD 1.5 architecture,
// written once into the user cache folder.
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/command.h"
#include "runtime/bench/benchmark.h"
#include "runtime/error.h"
#include "runtime/gpu/context.h"

using vksd::fail;

namespace {

void usage() {
  std::printf(
      "usage: vksd bench [options]\n"
      "\n"
      "Times Stable Diffusion on this device: the text encoder, one UNet step (batch 1 and 2),\n"
      "the VAE decoder and a whole generation (Euler, guidance 7), with seconds (first run, min\n"
      "and median of the repeats), it/s, GFLOP/s, the peak device memory of each part, the top\n"
      "UNet kernels by GPU time and the start-up time; beside them the device's best matmul and\n"
      "PyTorch-CPU on the same UNet and checkpoint (Python with torch, bench/torch_unet_bench.py)\n"
      "as ratios. Without -m: random weights in the SD 1.5 architecture, written once (2 GiB) to\n"
      "%s.\n"
      "\n"
      "  -m, --model PATH    checkpoint to time instead (.safetensors / diffusers folder)\n"
      "      --config FILE   vksd model config for it\n"
      "      --vocab PATH    CLIP vocabulary (generation part; default: the model's, else the demo's)\n"
      "      --parts LIST    any of unet,text,vae,generate,matmul,torch (default: all)\n"
      "      --sizes LIST    image sizes, e.g. 256,512 (default 256)\n"
      "      --dtypes LIST   fp16,fp32 (default fp16)\n"
      "      --batches LIST  UNet batches (default 1,2)\n"
      "      --repeats N     timed runs after the first (default 3; generation: 1)\n"
      "      --steps N       generation steps (default 20)\n"
      "      --top N         UNet kernels to list (default 8; 0 = no profiled run)\n"
      "      --matmul-size N best-matmul part: N x N x N (default 1024)\n"
      "      --python PATH   interpreter for the torch part (default /usr/bin/python3)\n"
      "      --quick         unet, text, vae, matmul at 256, fp16, batch 1, 1 repeat (a few minutes on lavapipe)\n"
      "      --full          all parts at 256 and 512, fp16 and fp32 (hours on a CPU driver)\n"
      "      --json          one JSON object on stdout instead of the table\n",
      vksd::bench_cache_dir().c_str());
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) v.push_back(x);
  return v;
}

std::vector<int> int_list(const std::string& flag, const std::string& s, long long lo, long long hi) {
  std::vector<int> v;
  for (auto& x : split(s)) v.push_back((int)vksd::cli::parse_int_in(flag, x, lo, hi));
  if (v.empty()) fail(flag + " needs at least one value");
  return v;
}

int cmd_bench(int argc, char** argv) {
  vksd::BenchOptions o;
  bool json = false;
  vksd::cli::FlagReader f(argc, argv);
  while (f.next()) {
    if (f.is("-h", "--help")) return usage(), 0;
    else if (f.is("-m", "--model")) o.model_path = f.val();
    else if (f.is(nullptr, "--config")) o.config_path = f.val();
    else if (f.is(nullptr, "--vocab")) o.vocab_path = f.val();
    else if (f.is(nullptr, "--parts")) o.parts = split(f.val());
    else if (f.is(nullptr, "--sizes")) o.sizes = int_list("--sizes", f.val(), 64, 4096);
    else if (f.is(nullptr, "--batches")) o.unet_batches = int_list("--batches", f.val(), 1, 16);
    else if (f.is(nullptr, "--dtypes")) {
      o.dtypes.clear();
      for (auto& d : split(f.val())) {
        if (d == "fp16" || d == "f16") o.dtypes.push_back(vksd::DType::F16);
        else if (d == "fp32" || d == "f32") o.dtypes.push_back(vksd::DType::F32);
        else fail("--dtypes: '" + d + "' is not fp16 or fp32");
      }
      if (o.dtypes.empty()) fail("--dtypes needs fp16 and/or fp32");
    } else if (f.is(nullptr, "--repeats")) o.repeats = (int)f.int_in(0, 1000);
    else if (f.is(nullptr, "--steps")) o.steps = (int)f.int_in(1, 1000);
    else if (f.is(nullptr, "--top")) o.top_kernels = (int)f.int_in(0, 1000);
    else if (f.is(nullptr, "--matmul-size")) o.matmul_size = (int)f.int_in(16, 8192);
    else if (f.is(nullptr, "--python")) o.python = f.val();
    else if (f.is_switch("--quick")) {
      o.parts = {"unet", "text", "vae", "matmul"};
      o.sizes = {256}, o.dtypes = {vksd::DType::F16}, o.unet_batches = {1}, o.repeats = 1;
    } else if (f.is_switch("--full")) {
      o.sizes = {256, 512}, o.dtypes = {vksd::DType::F16, vksd::DType::F32};
    } else if (f.is_switch("--json")) json = true;
    else fail("bench: unknown option '" + f.arg() + "' (vksd bench --help)");
  }
  auto progress = [](const std::string& s) { std::fprintf(stderr, "bench: %s\n", s.c_str()); };
  if (o.model_path.empty()) o.model_path = vksd::ensure_random_sd15(progress);
  vksd::Context ctx;
  const vksd::BenchReport rep = vksd::run_benchmark(ctx, o, progress);
  if (json) std::printf("%s\n", rep.json().c_str());
  else std::printf("%s", rep.table().c_str());
  return 0;
}

}  // namespace

VKSD_COMMAND(bench, "time the text encoder, UNet, VAE and a generation (random SD 1.5 by default)", cmd_bench);
