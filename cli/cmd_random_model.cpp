// `vksd random-model`: writes a checkpoint with random weights in the exact SD 1.5 architecture
// and key layout (runtime/model/random_checkpoint.h). It makes real-size benchmarks and tests
// possible where no model can be downloaded; its images are noise, its timings and memory real.
#include <chrono>
#include <cstdio>
#include <string>

#include "cli/args.h"
#include "cli/command.h"
#include "runtime/error.h"
#include "runtime/model/random_checkpoint.h"
#include "runtime/model/random_sdxl_checkpoint.h"
#include "runtime/model/sd1_layout.h"

using vksd::fail;

namespace {

void usage() {
  std::printf(
      "usage: vksd random-model -o FILE [--fp32] [--sdxl]\n"
      "\n"
      "Writes a safetensors checkpoint with the exact Stable Diffusion 1.5 architecture (UNet,\n"
      "VAE, CLIP ViT-L/14 text encoder; original single-file key layout) and deterministic random\n"
      "weights: for benchmarks and tests at real size without downloading a model. It loads like a\n"
      "real SD 1.5 checkpoint; its images are noise. About 2 GiB (fp16), 4 GiB with --fp32.\n"
      "Use the CLIP vocabulary of a real SD 1.x model with it (--vocab).\n"
      "\n"
      "  -o, --output FILE  where to write (written beside it, then renamed when complete)\n"
      "      --fp32         store fp32 instead of fp16\n"
      "      --sdxl         the SDXL base architecture and single-file layout instead (UNet 2.57 B\n"
      "                     parameters, CLIP ViT-L + OpenCLIP bigG, VAE; about 6.5 GiB in fp16)\n");
}

int cmd_random_model(int argc, char** argv) {
  std::string out;
  vksd::DType storage = vksd::DType::F16;
  bool sdxl = false;
  vksd::cli::FlagReader f(argc, argv);
  while (f.next()) {
    if (f.is("-h", "--help")) return usage(), 0;
    else if (f.is("-o", "--output")) out = f.val();
    else if (f.is_switch("--fp32")) storage = vksd::DType::F32;
    else if (f.is_switch("--sdxl")) sdxl = true;
    else fail("random-model: unknown option '" + f.arg() + "' (vksd random-model --help)");
  }
  if (out.empty()) fail("random-model: -o FILE is required (vksd random-model --help)");
  const auto t0 = std::chrono::steady_clock::now();
  if (sdxl) {
    vksd::write_random_sdxl_checkpoint(out, storage);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %s: SDXL base architecture, %lld parameters, %s, random weights (%.1f s)\n", out.c_str(),
                (long long)vksd::parameter_count(vksd::sdxl_single_file_layout(vksd::sdxl_base_architecture())),
                vksd::dtype_name(storage), s);
    return 0;
  }
  const vksd::ModelConfig sd15;  // the default config is SD 1.5's architecture
  vksd::write_random_checkpoint(sd15, out, storage);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: SD 1.5 architecture, %lld parameters, %s, random weights (%.1f s)\n", out.c_str(),
              (long long)vksd::parameter_count(vksd::sd1_layout(sd15)), vksd::dtype_name(storage), s);
  return 0;
}

}  // namespace

// VKSD_COMMAND needs an identifier; this name has a hyphen.
static ::vksd::cli::Register vksd_cmd_random_model(
    {"random-model", "write an SD 1.5-architecture checkpoint with random weights (benchmarks, tests)", cmd_random_model});
