// `vksd_bench load --model PATH [--f32] [--hash]`: how long loading a checkpoint's weights onto
// the device takes, per network (text encoder, UNet, VAE): wall and CPU seconds (getrusage, all
// threads: the machine is shared, CPU time counts the work). With --hash, every loaded tensor is
// downloaded again and an FNV-1a hash of the device bytes printed per network, so that two
// builds' loaders can be checked to place bit-identical weights on the device.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>
#include <sys/resource.h>

#include "bench/stopwatch.h"
#include "runtime/gpu/context.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/network_prefixes.h"
#include "runtime/model/weights.h"

using namespace vksd;

namespace {

uint64_t device_hash(Context& ctx, const WeightStore& ws) {
  uint64_t h = 1469598103934665603ull;
  std::vector<uint8_t> bytes;
  for (const std::string& n : ws.names()) {
    const DeviceTensor& t = ws.get(n);
    bytes.resize((size_t)t.bytes());
    download_bytes(ctx, t.buffer, t.offset, bytes.data(), t.bytes());
    for (char c : n) h = (h ^ (uint8_t)c) * 1099511628211ull;
    for (uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
  }
  return h;
}

}  // namespace

int bench_load_main(int argc, char** argv) {
  DType dt = DType::F16;
  bool hash = false;
  std::string model;
  for (int i = 0; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--f32")) dt = DType::F32;
    else if (!std::strcmp(argv[i], "--hash")) hash = true;
    else if (!std::strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
    else {
      std::fprintf(stderr, "usage: vksd_bench load --model PATH [--f32] [--hash]\n");
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: vksd_bench load --model PATH [--f32] [--hash]\n");
    return 2;
  }
  try {
    Context ctx;
    const Checkpoint ckpt = Checkpoint::open(model);
    double tw = 0, tc = 0;
    for (const char* prefix : {kClipPrefix, kUNetPrefix, kVaePrefix}) {
      const bench::Stopwatch sw;
      auto ws = load_weights(ctx, ckpt, prefix, dt);
      const double w = sw.wall(), c = sw.cpu();
      tw += w, tc += c;
      std::printf("%-42s %s %5zu tensors %8.1f MiB  %7.2f s wall %7.2f s CPU", prefix, dtype_name(dt), ws->names().size(),
                  ws->bytes() / 1048576.0, w, c);
      if (hash) std::printf("  hash %016llx", (unsigned long long)device_hash(ctx, *ws));
      std::printf("\n");
    }
    std::printf("total: %.2f s wall, %.2f s CPU\n", tw, tc);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vksd_bench load: %s\n", e.what());
    return 1;
  }
  return 0;
}
