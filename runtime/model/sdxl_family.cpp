#include "runtime/model/sdxl_family.h"

#include "runtime/error.h"

namespace vksd {

namespace {

std::string unet_name(const std::string& rest) { return std::string(kUNetPrefix) + rest; }

}  // namespace

const SdxlFamilyDescription& sdxl_base() {
  static const SdxlFamilyDescription d = [] {
    SdxlFamilyDescription x;
    x.vae.scale_factor = 0.13025f;
    x.vae.fp32_activations = true;  // its decoder overflows fp16 (runtime/diffusion/precision_plan.h)
    x.schedule.prediction_type = "epsilon";
    x.schedule.beta_schedule = "scaled_linear";
    return x;
  }();
  return d;
}

void apply_sdxl_description(ModelConfig& cfg, const SdxlFamilyDescription& d) {
  cfg.sample_size = d.sample_size;
  const SdxlUNetDescription& u = d.unet;
  cfg.unet.in_channels = u.in_channels;
  cfg.unet.out_channels = u.out_channels;
  cfg.unet.model_channels = u.model_channels;
  cfg.unet.channel_mult = u.channel_mult;
  cfg.unet.num_res_blocks = u.num_res_blocks;
  cfg.unet.attention_levels.clear();
  for (int depth : u.transformer_depth) cfg.unet.attention_levels.push_back(depth > 0);
  cfg.unet.num_head_channels = u.num_head_channels;
  cfg.unet.context_dim = u.context_dim;
  cfg.unet.use_linear_in_transformer = u.use_linear_in_transformer;
  cfg.vae = d.vae;
  cfg.schedule = d.schedule;
  cfg.clip = d.text.clip_l;  // the first encoder; the bigG one follows it in the context
}

std::vector<TensorSpec> sdxl_label_emb_layout(const SdxlUNetDescription& u) {
  const int64_t e = u.time_embed_dim();
  return {{unet_name("label_emb.0.0.weight"), {e, u.adm_in_channels}},
          {unet_name("label_emb.0.0.bias"), {e}},
          {unet_name("label_emb.0.2.weight"), {e, e}},
          {unet_name("label_emb.0.2.bias"), {e}}};
}

SdxlUNetDescription sdxl_unet_from_tensors(const std::map<std::string, Shape>& t, int num_head_channels) {
  auto shape = [&](const std::string& rest, size_t rank) -> const Shape& {
    auto it = t.find(unet_name(rest));
    if (it == t.end()) fail("SDXL UNet: missing tensor '" + unet_name(rest) + "'");
    if (it->second.size() != rank)
      fail("SDXL UNet: '" + unet_name(rest) + "' has shape " + shape_str(it->second) + ", expected rank " +
           std::to_string(rank));
    return it->second;
  };
  auto has = [&](const std::string& rest) { return t.count(unet_name(rest)) != 0; };
  // Transformer blocks under a SpatialTransformer ("input_blocks.4.1", "middle_block.1").
  auto depth_of = [&](const std::string& st) {
    int d = 0;
    while (has(st + ".transformer_blocks." + std::to_string(d) + ".norm1.weight")) ++d;
    return d;
  };

  SdxlUNetDescription u;
  const Shape& conv_in = shape("input_blocks.0.0.weight", 4);
  u.model_channels = (int)conv_in[0];
  u.in_channels = (int)conv_in[1];
  u.out_channels = (int)shape("out.2.weight", 4)[0];
  // input_blocks: 0 = conv_in, then per level num_res_blocks ResBlocks and (but the last level)
  // one Downsample (input_blocks.N.0.op).
  int first_down = 1;
  while (has("input_blocks." + std::to_string(first_down) + ".0.in_layers.0.weight")) ++first_down;
  u.num_res_blocks = first_down - 1;
  if (u.num_res_blocks < 1) fail("SDXL UNet: no ResBlock at input_blocks.1");
  const int per_level = u.num_res_blocks + 1;
  u.channel_mult.clear();
  u.transformer_depth.clear();
  for (int level = 0;; ++level) {
    const int first = 1 + level * per_level;
    const std::string res = "input_blocks." + std::to_string(first);
    if (!has(res + ".0.in_layers.0.weight")) break;
    const int64_t ch = shape(res + ".0.out_layers.3.weight", 4)[0];
    if (ch % u.model_channels) fail("SDXL UNet: level " + std::to_string(level) + " has " + std::to_string(ch) +
                                    " channels, not a multiple of " + std::to_string(u.model_channels));
    u.channel_mult.push_back((int)(ch / u.model_channels));
    u.transformer_depth.push_back(depth_of(res + ".1"));
    if (!has("input_blocks." + std::to_string(first + u.num_res_blocks) + ".0.op.weight")) break;
  }
  u.transformer_depth_middle = depth_of("middle_block.1");
  // Context width and projection kind from the first transformer there is.
  std::string st;
  for (size_t level = 0; level < u.transformer_depth.size() && st.empty(); ++level)
    if (u.transformer_depth[level] > 0) st = "input_blocks." + std::to_string(1 + (int)level * per_level) + ".1";
  if (st.empty() && u.transformer_depth_middle > 0) st = "middle_block.1";
  if (st.empty()) fail("SDXL UNet: no SpatialTransformer anywhere");
  u.context_dim = (int)shape(st + ".transformer_blocks.0.attn2.to_k.weight", 2)[1];
  const auto proj_in = t.find(unet_name(st + ".proj_in.weight"));
  if (proj_in == t.end()) fail("SDXL UNet: missing tensor '" + unet_name(st + ".proj_in.weight") + "'");
  u.use_linear_in_transformer = proj_in->second.size() == 2;
  u.adm_in_channels = (int)shape("label_emb.0.0.weight", 2)[1];
  u.num_head_channels = num_head_channels;
  return u;
}

}  // namespace vksd
