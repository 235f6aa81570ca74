#include "cli/sdxl_info.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <vector>

#include "runtime/gpu/memory.h"
#include "runtime/io/file_check.h"
#include "runtime/model/model_family.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/sdxl_family.h"
#include "runtime/model/sdxl_text.h"

namespace vksd::cli {

namespace {

std::string ints(const std::vector<int>& v) {
  std::string r = "[";
  for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
  return r + "]";
}

void print_encoder(const char* title, const ClipConfig& c, const char* use) {
  std::printf("\n%s\n  %s\n", title, use);
  std::printf("  vocab_size %d, max_length %d, width %d, layers %d (%d used), heads %d%s, mlp_dim %d\n", c.vocab_size,
              c.max_length, c.width, c.layers, c.used_layers(), c.heads,
              c.heads > 0 && c.width % c.heads == 0 ? "" : " (the SDXL default, which does not divide this width)",
              c.mlp_dim);
  std::printf("  activation %s, bos %d, eos %d, pad %d\n", c.quick_gelu ? "quick_gelu" : "gelu", c.bos_token, c.eos_token,
              c.pad_token);
}

}  // namespace

bool print_sdxl_info(const std::string& path) {
  if (path_kind(path) != PathKind::Regular) return false;
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext != ".safetensors") return false;
  SafetensorsFile f(path);
  std::vector<std::string> keys;
  for (const StTensor& t : f.tensors()) keys.push_back(t.name);
  if (!is_sdxl_base(keys)) return false;

  std::map<std::string, Shape> unet;
  int64_t unet_params = 0, vae_params = 0;
  uint64_t unet_bytes[2] = {0, 0}, vae_bytes[2] = {0, 0};  // fp16, fp32
  for (const StTensor& t : f.tensors()) {
    const bool is_unet = t.name.rfind(kUNetPrefix, 0) == 0, is_vae = t.name.rfind(kVaePrefix, 0) == 0;
    if (!is_unet && !is_vae) continue;
    if (is_unet) unet[t.name] = t.shape;
    (is_unet ? unet_params : vae_params) += t.numel();
    for (int i = 0; i < 2; ++i)
      (is_unet ? unet_bytes : vae_bytes)[i] += align_up((VkDeviceSize)t.numel() * (i ? 4 : 2), kTensorAlignment);
  }
  const SdxlFamilyDescription& d = sdxl_base();
  const SdxlUNetDescription u = sdxl_unet_from_tensors(unet, d.unet.num_head_channels);
  const SdxlTextWeights text = SdxlTextWeights::open(path, 0, 0, /*check_heads=*/false);
  const SdxlTextConfig& tc = text.config();

  std::printf("model      %s\n", std::filesystem::path(path).stem().string().c_str());
  std::printf("family     SDXL base -- recognised, not yet runnable: SDXL UNet support is in progress\n");
  std::printf("path       %s\n", path.c_str());
  std::printf("format     single-file safetensors\n");
  std::printf("sample     %dx%d (default image size)\n", d.sample_size, d.sample_size);

  std::printf("\nUNet (%s)\n", kUNetPrefix);
  std::printf("  in_channels %d, out_channels %d, model_channels %d, channel_mult %s, num_res_blocks %d\n", u.in_channels,
              u.out_channels, u.model_channels, ints(u.channel_mult).c_str(), u.num_res_blocks);
  std::printf("  transformer depth per level %s, middle %d, context_dim %d, proj_in/out %s\n",
              ints(u.transformer_depth).c_str(), u.transformer_depth_middle, u.context_dim,
              u.use_linear_in_transformer ? "linear" : "conv1x1");
  std::printf("  heads of %d channels (SDXL default), time_embed_dim %d\n", u.num_head_channels, u.time_embed_dim());
  std::printf("  vector input y: adm_in_channels %d = pooled text %d + 3 x %d size embeddings (label_emb)\n",
              u.adm_in_channels, tc.projection_dim, 2 * d.size_embed_dim);
  std::printf("\nVAE (%s)\n  scale_factor %g (SDXL)\n", kVaePrefix, d.vae.scale_factor);

  print_encoder("text encoder 1 (conditioner.embedders.0.transformer.text_model.*, Hugging Face names)", tc.clip_l,
                "OpenAI CLIP ViT-L/14: output of the penultimate layer, no final LayerNorm");
  print_encoder("text encoder 2 (conditioner.embedders.1.model.*, open_clip names)", tc.clip_g,
                "OpenCLIP ViT-bigG/14: penultimate layer for the context; pooled = ln_final(last) at the end token "
                "through text_projection");
  std::printf("  projection_dim %d\n", tc.projection_dim);
  std::printf("\ncontext    %d + %d = %d channels (cat of both encoders)\n", tc.clip_l.width, tc.clip_g.width,
              tc.context_dim());

  struct Row {
    const char* name;
    int64_t params;
    uint64_t fp16, fp32;
  };
  auto text_bytes = [&](int e, int elem) {
    return (uint64_t)align_up((VkDeviceSize)text.parameter_count(e) * elem, kTensorAlignment);
  };
  const Row rows[] = {{"UNet", unet_params, unet_bytes[0], unet_bytes[1]},
                      {"VAE", vae_params, vae_bytes[0], vae_bytes[1]},
                      {"CLIP ViT-L", text.parameter_count(0), text_bytes(0, 2), text_bytes(0, 4)},
                      {"OpenCLIP bigG", text.parameter_count(1), text_bytes(1, 2), text_bytes(1, 4)}};
  auto mib = [](uint64_t b) { return (double)b / (1024.0 * 1024.0); };
  std::printf("\n%-14s %14s %12s %12s\n", "network", "parameters", "fp16 MiB", "fp32 MiB");
  Row total{"total", 0, 0, 0};
  for (const Row& r : rows) {
    std::printf("%-14s %14lld %12.1f %12.1f\n", r.name, (long long)r.params, mib(r.fp16), mib(r.fp32));
    total.params += r.params, total.fp16 += r.fp16, total.fp32 += r.fp32;
  }
  std::printf("%-14s %14lld %12.1f %12.1f   (weights only, approximate)\n", total.name, (long long)total.params,
              mib(total.fp16), mib(total.fp32));
  return true;
}

}  // namespace vksd::cli
