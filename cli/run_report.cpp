#include "cli/run_report.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "runtime/diffusion/peak_memory.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/precision_plan.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/kernel.h"
#include "runtime/model/demo_model.h"

namespace vksd::cli {

namespace {
double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }
std::string model_file(const std::string& model) {
  const std::string inner = model_in_folder(model);
  return inner.empty() ? model : inner;
}
}  // namespace

void report_run(const Context& ctx, SdPipeline& pipe, const GenerateParams& p, const std::string& model,
                bool verbose, const std::vector<std::pair<std::string, uint64_t>>& stage_peaks) {
  const bool lowvram = pipe.lowvram();  // --lowvram, or switched on for the budget
  PeakMemoryRecord r;
  r.model = model_file(model);
  r.width = p.width, r.height = p.height;
  r.dtype = dtype_name(pipe.dtype());
  r.lowvram = lowvram;
  r.batch = p.cfg_scale != 1.0 ? 2 : 1;
  r.peak_bytes = ctx.memory_peak();
  r.device = ctx.info().name;
  for (auto& [stage, bytes] : stage_peaks)
    r.stages += (r.stages.empty() ? "" : ", ") + stage + " " + std::to_string((int)(mib(bytes) + 0.5)) + " MiB";
  record_peak_memory(r);
  if (!verbose) return;
  const PrecisionPlan prec = pipe.precision();
  std::fprintf(stderr, "precision: text encoder %s; UNet %s; VAE %s\n", describe(prec.text).c_str(),
               describe(prec.unet).c_str(), describe(prec.vae).c_str());
  std::fprintf(stderr, "peak device memory per stage (measured): %s\n", r.stages.empty() ? "none" : r.stages.c_str());
  std::fprintf(stderr, "estimated per stage: %s\n", pipe.memory_estimate(p).describe_stages().c_str());
  std::string now;
  for (auto& [cat, bytes] : ctx.memory_in_use())
    now += (now.empty() ? "" : ", ") + cat + " " + std::to_string((int)(mib(bytes) + 0.5)) + " MiB";
  std::fprintf(stderr, "peak device memory %.0f MiB (measured: every vksd allocation%s; in use at the end: %s)\n",
               mib(r.peak_bytes), lowvram ? ", --lowvram" : "", now.empty() ? "nothing" : now.c_str());
  const KernelStats k = const_cast<Context&>(ctx).kernels().stats();
  std::fprintf(stderr, "pipelines: %zu created, %.2f s of creation (%.2f s wall in parallel batches); by shader:", k.pipelines,
               k.create_seconds, k.prepare_seconds);
  std::vector<std::pair<double, std::string>> by;
  for (auto& [name, v] : k.by_shader) by.emplace_back(v.second, name + " " + std::to_string(v.first) + "x");
  std::sort(by.rbegin(), by.rend());
  for (size_t i = 0; i < by.size() && i < 6; ++i) std::fprintf(stderr, " %s %.2f s", by[i].second.c_str(), by[i].first);
  std::fprintf(stderr, "\n");
}

void print_measured_peaks(const std::string& model) {
  const auto recs = peak_memory_records(model_file(model));
  if (recs.empty()) return;
  std::printf("\nmeasured peak device memory (vksd generate runs of this file, %s):\n", peak_memory_file().c_str());
  for (auto& r : recs)
  {
    std::printf("  %dx%d %s %s, UNet batch %d: %.0f MiB on %s (%s)\n", r.width, r.height, r.dtype.c_str(),
                r.lowvram ? "--lowvram" : "all resident", r.batch, mib(r.peak_bytes), r.device.c_str(), r.date.c_str());
    if (!r.stages.empty()) std::printf("    per stage: %s\n", r.stages.c_str());
  }
}

}  // namespace vksd::cli
