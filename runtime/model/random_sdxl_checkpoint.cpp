#include "runtime/model/random_sdxl_checkpoint.h"

#include "runtime/model/network_prefixes.h"
#include "runtime/model/random_checkpoint.h"
#include "runtime/model/safetensors_writer.h"

namespace vksd {

// sd_xl_base.yaml's numbers, written out here (not taken from the family code that reads
// checkpoints) so that the file is an independent description of the format.
ModelConfig sdxl_base_architecture() {
  ModelConfig c;
  UNetConfig& u = c.unet;
  u.model_channels = 320;
  u.channel_mult = {1, 2, 4};
  u.num_res_blocks = 2;
  u.attention_levels = {false, true, true};
  u.transformer_depths = {0, 2, 10};
  u.transformer_depth_middle = 10;
  u.num_head_channels = 64;
  u.use_linear_in_transformer = true;
  u.context_dim = 2048;
  u.adm_in_channels = 2816;  // pooled 1280 + 3 x 2 x 256 size embeddings
  c.vae.scale_factor = 0.13025f;
  c.sample_size = 1024;
  c.clip = ClipConfig{};  // CLIP ViT-L/14, 12 layers stored
  ClipConfig g;           // OpenCLIP ViT-bigG/14
  g.width = 1280;
  g.layers = 32;
  g.heads = 20;
  g.mlp_dim = 5120;
  g.quick_gelu = false;
  g.pad_token = 0;
  c.more_text_encoders = {g};
  return c;
}

namespace {

// Where sd_xl_base_1.0.safetensors stores its two text encoders.
constexpr const char* kClipLStored = "conditioner.embedders.0.transformer.text_model.";
constexpr const char* kClipGStored = "conditioner.embedders.1.model.";
constexpr int kPooledDim = 1280;  // bigG's text_projection

// open_clip's TextTransformer (the bigG tower) under `p`: the names sd_xl_base_1.0 stores.
void add_openclip_tower(std::vector<TensorSpec>& out, const std::string& p, const ClipConfig& c, int proj) {
  const int64_t D = c.width, M = c.mlp_dim;
  out.push_back({p + "token_embedding.weight", {c.vocab_size, D}});
  out.push_back({p + "positional_embedding", {c.max_length, D}});
  for (int l = 0; l < c.layers; ++l) {
    const std::string b = p + "transformer.resblocks." + std::to_string(l) + ".";
    out.push_back({b + "ln_1.weight", {D}});
    out.push_back({b + "ln_1.bias", {D}});
    out.push_back({b + "attn.in_proj_weight", {3 * D, D}});
    out.push_back({b + "attn.in_proj_bias", {3 * D}});
    out.push_back({b + "attn.out_proj.weight", {D, D}});
    out.push_back({b + "attn.out_proj.bias", {D}});
    out.push_back({b + "ln_2.weight", {D}});
    out.push_back({b + "ln_2.bias", {D}});
    out.push_back({b + "mlp.c_fc.weight", {M, D}});
    out.push_back({b + "mlp.c_fc.bias", {M}});
    out.push_back({b + "mlp.c_proj.weight", {D, M}});
    out.push_back({b + "mlp.c_proj.bias", {D}});
  }
  out.push_back({p + "ln_final.weight", {D}});
  out.push_back({p + "ln_final.bias", {D}});
  out.push_back({p + "text_projection", {D, proj}});
}

}  // namespace

std::vector<TensorSpec> sdxl_single_file_layout(const ModelConfig& c) {
  std::vector<TensorSpec> out = unet_layout(c.unet);
  for (TensorSpec& s : vae_layout(c.vae)) out.push_back(s);
  // CLIP ViT-L: the Hugging Face names of clip_layout, moved under the SDXL prefix. The stored
  // tower is whole (12 layers); SDXL reads its penultimate layer.
  for (TensorSpec& s : clip_layout(c.clip)) {
    if (!s.name.starts_with(kClipPrefix)) continue;
    s.name = kClipLStored + s.name.substr(std::string(kClipPrefix).size());
    out.push_back(s);
  }
  if (!c.more_text_encoders.empty()) add_openclip_tower(out, kClipGStored, c.more_text_encoders[0], kPooledDim);
  return out;
}

void write_random_sdxl_checkpoint(const std::string& path, DType storage) {
  const auto specs = sdxl_single_file_layout(sdxl_base_architecture());
  std::vector<StOutTensor> out;
  out.reserve(specs.size());
  for (const auto& s : specs) out.push_back({s.name, storage, s.shape});
  write_safetensors(path, out, [&](size_t i, std::vector<float>& v) { v = random_weight(specs[i].name, specs[i].shape); },
                    {{"vksd", "random weights (runtime/model/random_sdxl_checkpoint.h), not a trained model"}});
}

}  // namespace vksd
