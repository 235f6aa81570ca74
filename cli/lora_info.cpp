#include "cli/lora_info.h"

#include <cstdio>
#include <filesystem>

#include "runtime/model/lora.h"
#include "runtime/model/safetensors.h"

namespace vksd::cli {

bool print_lora_info(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) || std::filesystem::path(path).extension() != ".safetensors") return false;
  if (!is_lora_file(SafetensorsFile(path))) return false;
  LoraFile f(path);
  const LoraSummary s = summarize_lora(f);
  std::printf("lora       %s\n", f.name().c_str());
  std::printf("path       %s\n", path.c_str());
  std::printf("format     %s LoRA\n", s.format.c_str());
  std::printf("hash       %s (A1111 short hash, as in \"Lora hashes\")\n", f.short_hash().c_str());
  std::printf("layers     %zu: %d UNet, %d text encoder; %d conv layers with a kh x kw kernel (LoCon)\n",
              f.layers().size(), s.unet_layers, s.text_layers, s.conv_layers);
  if (s.min_rank == s.max_rank) std::printf("rank       %lld\n", (long long)s.min_rank);
  else std::printf("rank       %lld .. %lld\n", (long long)s.min_rank, (long long)s.max_rank);
  if (s.min_alpha == s.max_alpha) std::printf("alpha      %g", s.min_alpha);
  else std::printf("alpha      %g .. %g", s.min_alpha, s.max_alpha);
  if (s.layers_without_alpha) std::printf(" (%d layers store none: alpha = rank)", s.layers_without_alpha);
  std::printf("\nparameters %lld\n", (long long)s.parameters);
  for (const auto& [k, v] : s.metadata) std::printf("%-10s %s\n", k.c_str(), v.c_str());
  std::printf("apply with --lora %s:WEIGHT or <lora:%s:WEIGHT> in the prompt with --lora-dir %s\n", path.c_str(),
              f.name().c_str(), std::filesystem::path(path).parent_path().string().c_str());
  return true;
}

}  // namespace vksd::cli
