#include "runtime/model/sd1_layout.h"

#include "runtime/error.h"

namespace vksd {

namespace {

// Appends tensors under one name prefix; the helpers mirror the modules of the reference code.
struct Layout {
  std::vector<TensorSpec>& out;
  void add(const std::string& name, Shape s) { out.push_back({name, std::move(s)}); }
  void linear(const std::string& p, int64_t out_f, int64_t in_f, bool bias = true) {
    add(p + ".weight", {out_f, in_f});
    if (bias) add(p + ".bias", {out_f});
  }
  void conv(const std::string& p, int64_t out_c, int64_t in_c, int64_t k) {
    add(p + ".weight", {out_c, in_c, k, k});
    add(p + ".bias", {out_c});
  }
  void norm(const std::string& p, int64_t c) {
    add(p + ".weight", {c});
    add(p + ".bias", {c});
  }
};

// openaimodel.ResBlock: in_layers = [GroupNorm, SiLU, conv3x3], emb_layers = [SiLU, Linear],
// out_layers = [GroupNorm, SiLU, Dropout, conv3x3], skip_connection = 1x1 conv when channels change.
void unet_resblock(Layout& L, const std::string& p, int64_t in, int64_t out, int64_t emb) {
  L.norm(p + ".in_layers.0", in);
  L.conv(p + ".in_layers.2", out, in, 3);
  L.linear(p + ".emb_layers.1", out, emb);
  L.norm(p + ".out_layers.0", out);
  L.conv(p + ".out_layers.3", out, out, 3);
  if (in != out) L.conv(p + ".skip_connection", out, in, 1);
}

// attention.SpatialTransformer: GroupNorm, proj_in, BasicTransformerBlocks (self-attn, cross-attn,
// GEGLU feed-forward with inner dim 4C, three LayerNorms), proj_out. q/k/v have no bias.
void unet_transformer(Layout& L, const std::string& p, int64_t c, int depth, const UNetConfig& u) {
  L.norm(p + ".norm", c);
  if (u.use_linear_in_transformer) L.linear(p + ".proj_in", c, c);
  else L.conv(p + ".proj_in", c, c, 1);
  for (int d = 0; d < depth; ++d) {
    std::string b = p + ".transformer_blocks." + std::to_string(d);
    L.linear(b + ".attn1.to_q", c, c, false);
    L.linear(b + ".attn1.to_k", c, c, false);
    L.linear(b + ".attn1.to_v", c, c, false);
    L.linear(b + ".attn1.to_out.0", c, c);
    L.linear(b + ".attn2.to_q", c, c, false);
    L.linear(b + ".attn2.to_k", c, u.context_dim, false);
    L.linear(b + ".attn2.to_v", c, u.context_dim, false);
    L.linear(b + ".attn2.to_out.0", c, c);
    L.linear(b + ".ff.net.0.proj", 8 * c, c);  // GEGLU: value and gate halves
    L.linear(b + ".ff.net.2", c, 4 * c);
    L.norm(b + ".norm1", c);
    L.norm(b + ".norm2", c);
    L.norm(b + ".norm3", c);
  }
  if (u.use_linear_in_transformer) L.linear(p + ".proj_out", c, c);
  else L.conv(p + ".proj_out", c, c, 1);
}

// model.ResnetBlock of the autoencoder (no time embedding; nin_shortcut when channels change).
void vae_resblock(Layout& L, const std::string& p, int64_t in, int64_t out) {
  L.norm(p + ".norm1", in);
  L.conv(p + ".conv1", out, in, 3);
  L.norm(p + ".norm2", out);
  L.conv(p + ".conv2", out, out, 3);
  if (in != out) L.conv(p + ".nin_shortcut", out, in, 1);
}

// model.AttnBlock: single-head self-attention with 1x1 convs.
void vae_attn(Layout& L, const std::string& p, int64_t c) {
  L.norm(p + ".norm", c);
  for (const char* n : {".q", ".k", ".v", ".proj_out"}) L.conv(p + n, c, c, 1);
}

}  // namespace

std::vector<TensorSpec> unet_layout(const UNetConfig& u) {
  if (u.channel_mult.empty() || u.attention_levels.size() != u.channel_mult.size())
    fail("UNet config: channel_mult and attention_levels must be non-empty and of equal length");
  if (!u.transformer_depths.empty() && u.transformer_depths.size() != u.channel_mult.size())
    fail("UNet config: transformer_depths must have one entry per level");
  std::vector<TensorSpec> out;
  Layout L{out};
  const std::string P = kUNetPrefix;
  const int64_t mc = u.model_channels, emb = u.time_embed_dim();
  const int levels = (int)u.channel_mult.size();

  L.linear(P + "time_embed.0", emb, mc);
  L.linear(P + "time_embed.2", emb, emb);
  if (u.adm_in_channels > 0) {
    L.linear(P + "label_emb.0.0", emb, u.adm_in_channels);
    L.linear(P + "label_emb.0.2", emb, emb);
  }

  // Encoder: input_blocks.0 is conv_in; then per level num_res_blocks x (ResBlock [+ transformer]),
  // then a strided-conv Downsample except after the last level. Skip widths are remembered for
  // the decoder's concatenations.
  int block = 0;
  L.conv(P + "input_blocks.0.0", mc, u.in_channels, 3);
  std::vector<int64_t> skips = {mc};
  int64_t ch = mc;
  for (int l = 0; l < levels; ++l) {
    for (int r = 0; r < u.num_res_blocks; ++r) {
      std::string b = P + "input_blocks." + std::to_string(++block);
      int64_t out_ch = mc * u.channel_mult[l];
      unet_resblock(L, b + ".0", ch, out_ch, emb);
      ch = out_ch;
      if (const int depth = u.depth_at(l)) unet_transformer(L, b + ".1", ch, depth, u);
      skips.push_back(ch);
    }
    if (l != levels - 1) {
      L.conv(P + "input_blocks." + std::to_string(++block) + ".0.op", ch, ch, 3);
      skips.push_back(ch);
    }
  }

  unet_resblock(L, P + "middle_block.0", ch, ch, emb);
  const int mid_depth = u.middle_depth();
  if (mid_depth > 0) unet_transformer(L, P + "middle_block.1", ch, mid_depth, u);
  unet_resblock(L, P + (mid_depth > 0 ? "middle_block.2" : "middle_block.1"), ch, ch, emb);

  // Decoder: per level (deepest first) num_res_blocks + 1 ResBlocks on [h, skip] concatenations,
  // the Upsample conv sitting in the last block of every level but the shallowest.
  block = 0;
  for (int l = levels - 1; l >= 0; --l) {
    for (int r = 0; r <= u.num_res_blocks; ++r) {
      std::string b = P + "output_blocks." + std::to_string(block++);
      int64_t skip = skips.back();
      skips.pop_back();
      int64_t out_ch = mc * u.channel_mult[l];
      unet_resblock(L, b + ".0", ch + skip, out_ch, emb);
      ch = out_ch;
      int sub = 1;
      if (const int depth = u.depth_at(l)) unet_transformer(L, b + "." + std::to_string(sub++), ch, depth, u);
      if (l != 0 && r == u.num_res_blocks) L.conv(b + "." + std::to_string(sub) + ".conv", ch, ch, 3);
    }
  }

  L.norm(P + "out.0", ch);
  L.conv(P + "out.2", u.out_channels, ch, 3);
  return out;
}

std::vector<TensorSpec> vae_layout(const VaeConfig& v) {
  if (v.ch_mult.empty()) fail("VAE config: ch_mult must not be empty");
  std::vector<TensorSpec> out;
  Layout L{out};
  const int levels = (int)v.ch_mult.size();

  const std::string E = std::string(kVaePrefix) + "encoder.";
  L.conv(E + "conv_in", v.ch, v.in_channels, 3);
  int64_t ch = v.ch;
  for (int l = 0; l < levels; ++l) {
    std::string d = E + "down." + std::to_string(l);
    for (int r = 0; r < v.num_res_blocks; ++r) {
      vae_resblock(L, d + ".block." + std::to_string(r), ch, (int64_t)v.ch * v.ch_mult[l]);
      ch = (int64_t)v.ch * v.ch_mult[l];
    }
    if (l != levels - 1) L.conv(d + ".downsample.conv", ch, ch, 3);
  }
  vae_resblock(L, E + "mid.block_1", ch, ch);
  vae_attn(L, E + "mid.attn_1", ch);
  vae_resblock(L, E + "mid.block_2", ch, ch);
  L.norm(E + "norm_out", ch);
  L.conv(E + "conv_out", 2 * v.z_channels, ch, 3);  // double_z: mean and logvar

  const std::string D = std::string(kVaePrefix) + "decoder.";
  ch = (int64_t)v.ch * v.ch_mult.back();
  L.conv(D + "conv_in", ch, v.z_channels, 3);
  vae_resblock(L, D + "mid.block_1", ch, ch);
  vae_attn(L, D + "mid.attn_1", ch);
  vae_resblock(L, D + "mid.block_2", ch, ch);
  for (int l = levels - 1; l >= 0; --l) {
    std::string u = D + "up." + std::to_string(l);
    for (int r = 0; r <= v.num_res_blocks; ++r) {
      vae_resblock(L, u + ".block." + std::to_string(r), ch, (int64_t)v.ch * v.ch_mult[l]);
      ch = (int64_t)v.ch * v.ch_mult[l];
    }
    if (l != 0) L.conv(u + ".upsample.conv", ch, ch, 3);
  }
  L.norm(D + "norm_out", ch);
  L.conv(D + "conv_out", v.out_channels, ch, 3);

  L.conv(std::string(kVaePrefix) + "quant_conv", 2 * v.embed_dim, 2 * v.z_channels, 1);
  L.conv(std::string(kVaePrefix) + "post_quant_conv", v.z_channels, v.embed_dim, 1);
  return out;
}

std::vector<TensorSpec> clip_layout(const ClipConfig& c) {
  std::vector<TensorSpec> out;
  Layout L{out};
  const std::string P = c.prefix;
  L.add(P + "embeddings.token_embedding.weight", {c.vocab_size, c.width});
  L.add(P + "embeddings.position_embedding.weight", {c.max_length, c.width});
  for (int i = 0; i < c.layers; ++i) {
    std::string p = P + "encoder.layers." + std::to_string(i);
    L.norm(p + ".layer_norm1", c.width);
    for (const char* n : {".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.out_proj"})
      L.linear(p + n, c.width, c.width);
    L.norm(p + ".layer_norm2", c.width);
    L.linear(p + ".mlp.fc1", c.mlp_dim, c.width);
    L.linear(p + ".mlp.fc2", c.width, c.mlp_dim);
  }
  L.norm(P + "final_layer_norm", c.width);
  if (c.pooled_dim > 0) L.add(P + "text_projection", {c.width, c.pooled_dim});
  return out;
}

std::vector<TensorSpec> sd1_layout(const ModelConfig& c) {
  auto all = unet_layout(c.unet);
  auto v = vae_layout(c.vae);
  all.insert(all.end(), v.begin(), v.end());
  for (const ClipConfig& e : c.text_encoders()) {
    auto t = clip_layout(e);
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

int64_t parameter_count(const std::vector<TensorSpec>& specs) {
  int64_t n = 0;
  for (const auto& s : specs) n += shape_numel(s.shape);
  return n;
}

}  // namespace vksd
