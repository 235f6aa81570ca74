#include "runtime/nn/vae.h"

#include <algorithm>

#include "runtime/error.h"

namespace vksd::nn {

namespace {

// ResnetBlock (no time embedding): norm1+SiLU, conv1, norm2+SiLU, (dropout), conv2, + x;
// nin_shortcut (1x1) when the channel count changes.
Tensor resnet_block(const Scope& s, Tensor x, int64_t out_ch, float eps) {
  Tensor h = conv3x3(s.sub("conv1"), group_norm(s.sub("norm1"), x, eps, /*silu=*/true));
  if (h.dim(1) != out_ch)
    fail(s.quoted("conv1") + " has " + std::to_string(h.dim(1)) + " output channels, expected " +
         std::to_string(out_ch));
  Tensor skip = x;
  if (s.has("nin_shortcut.weight")) skip = conv1x1(s.sub("nin_shortcut"), x);
  else if (s.has("conv_shortcut.weight")) skip = conv3x3(s.sub("conv_shortcut"), x);
  return conv3x3(s.sub("conv2"), group_norm(s.sub("norm2"), h, eps, /*silu=*/true), /*residual=*/skip);
}

// AttnBlock: one head over all h*w pixels, q/k/v/proj_out 1x1 convs (applied as linears on the
// token layout), scale 1/sqrt(C), residual.
Tensor attn_block(const Scope& s, Tensor x, float eps) {
  const int64_t h = x.dim(2), w = x.dim(3);
  Tensor t = ops::nchw_to_nlc(group_norm(s.sub("norm"), x, eps, /*silu=*/false));
  Tensor q = conv1x1_as_linear(s.sub("q"), t);
  Tensor k = conv1x1_as_linear(s.sub("k"), t);
  Tensor v = conv1x1_as_linear(s.sub("v"), t);
  Tensor o = conv1x1_as_linear(s.sub("proj_out"), multi_head_attention(q, k, v, /*heads=*/1));
  return ops::add(x, ops::nlc_to_nchw(o, h, w));
}

// mid: block_1, attn_1, block_2 (shared by Encoder and Decoder).
Tensor mid_block(const Scope& s, Tensor x, float eps) {
  const int64_t ch = x.dim(1);
  x = resnet_block(s.sub("block_1"), x, ch, eps);
  x = attn_block(s.sub("attn_1"), x, eps);
  return resnet_block(s.sub("block_2"), x, ch, eps);
}

// Encoder: image -> 2 * z_channels moments (before quant_conv).
Tensor encoder(const Scope& s, Tensor x, const VaeConfig& cfg) {
  const int levels = (int)cfg.ch_mult.size();
  Tensor h = conv3x3(s.sub("conv_in"), x);
  for (int i = 0; i < levels; ++i) {
    const Scope down = s.sub("down").sub(i);
    for (int j = 0; j < cfg.num_res_blocks; ++j) {
      h = resnet_block(down.sub("block").sub(j), h, (int64_t)cfg.ch * cfg.ch_mult[i], cfg.gn_eps);
      if (down.has("attn." + std::to_string(j) + ".q.weight")) h = attn_block(down.sub("attn").sub(j), h, cfg.gn_eps);
    }
    // Downsample pads right and bottom only, then a 3x3 stride-2 conv without padding.
    if (i != levels - 1) h = conv(down.sub("downsample.conv"), h, ops::Conv2d::down_asym());
  }
  h = mid_block(s.sub("mid"), h, cfg.gn_eps);
  h = group_norm(s.sub("norm_out"), h, cfg.gn_eps, /*silu=*/true);
  return conv3x3(s.sub("conv_out"), h);
}

// Decoder: z_channels latent -> image.
Tensor decoder(const Scope& s, Tensor z, const VaeConfig& cfg) {
  const int levels = (int)cfg.ch_mult.size();
  Tensor h = conv3x3(s.sub("conv_in"), z);
  h = mid_block(s.sub("mid"), h, cfg.gn_eps);
  for (int i = levels - 1; i >= 0; --i) {
    const Scope up = s.sub("up").sub(i);
    for (int j = 0; j <= cfg.num_res_blocks; ++j) {
      h = resnet_block(up.sub("block").sub(j), h, (int64_t)cfg.ch * cfg.ch_mult[i], cfg.gn_eps);
      if (up.has("attn." + std::to_string(j) + ".q.weight")) h = attn_block(up.sub("attn").sub(j), h, cfg.gn_eps);
    }
    if (i != 0) h = conv3x3(up.sub("upsample.conv"), ops::upsample_nearest2x(h));
  }
  h = group_norm(s.sub("norm_out"), h, cfg.gn_eps, /*silu=*/true);
  return conv3x3(s.sub("conv_out"), h);
}

constexpr const char* kVaePrefix = "first_stage_model";

}  // namespace

VaeDecoder::VaeDecoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch, int latent_h,
                       int latent_w, NetOptions opts)
    : ctx_(ctx), cfg_(cfg), batch_(batch), h_(latent_h), w_(latent_w) {
  if (batch < 1 || latent_h < 1 || latent_w < 1)
    fail("VaeDecoder: batch " + std::to_string(batch) + " and latent size " + std::to_string(latent_h) + "x" +
         std::to_string(latent_w) + " must be positive");
  graph_ = std::make_unique<Graph>(ctx);
  Graph& g = *graph_;
  const Scope root(g, weights, kVaePrefix);
  z_ = g.input({batch, cfg.embed_dim, latent_h, latent_w}, opts.activations.value_or(weights.storage()), "z");
  Tensor h = conv1x1(root.sub("post_quant_conv"), z_);
  image_ = decoder(root.sub("decoder"), h, cfg);
  g.keep(image_);
  g.compile(opts.profile);
}

VaeDecoder::~VaeDecoder() = default;

std::vector<float> VaeDecoder::decode(const std::vector<float>& z) {
  if (z.size() != (size_t)z_.numel())
    fail("VaeDecoder::decode: got " + std::to_string(z.size()) + " floats, expected " + shape_str(z_.shape()));
  graph_->upload(z_, z);
  graph_->run();
  return graph_->download(image_);
}

VkDeviceSize VaeDecoder::peak_bytes() const { return graph_->peak_bytes(); }

VaeEncoder::VaeEncoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch, int image_h,
                       int image_w, NetOptions opts)
    : ctx_(ctx), cfg_(cfg), batch_(batch), h_(image_h), w_(image_w) {
  const int f = cfg.downsample_factor();
  if (batch < 1 || image_h < f || image_w < f || image_h % f || image_w % f)
    fail("VaeEncoder: image size " + std::to_string(image_h) + "x" + std::to_string(image_w) +
         " must be a positive multiple of " + std::to_string(f));
  graph_ = std::make_unique<Graph>(ctx);
  Graph& g = *graph_;
  const Scope root(g, weights, kVaePrefix);
  image_ = g.input({batch, cfg.in_channels, image_h, image_w}, opts.activations.value_or(weights.storage()), "image");
  Tensor h = encoder(root.sub("encoder"), image_, cfg);
  moments_ = conv1x1(root.sub("quant_conv"), h);
  if (moments_.dim(1) != 2 * cfg.embed_dim)
    fail("VaeEncoder: quant_conv gives " + std::to_string(moments_.dim(1)) + " channels, expected 2 x embed_dim " +
         std::to_string(cfg.embed_dim));
  g.keep(moments_);
  g.compile(opts.profile);
}

VaeEncoder::~VaeEncoder() = default;

VaeEncoder::Posterior VaeEncoder::encode(const std::vector<float>& image) {
  if (image.size() != (size_t)image_.numel())
    fail("VaeEncoder::encode: got " + std::to_string(image.size()) + " floats, expected " + shape_str(image_.shape()));
  graph_->upload(image_, image);
  graph_->run();
  std::vector<float> m = graph_->download(moments_);
  // moments [B, 2E, h, w]: the first E channels are the mean, the last E the log-variance.
  const size_t plane = (size_t)moments_.dim(2) * moments_.dim(3), half = (size_t)cfg_.embed_dim * plane;
  Posterior p;
  p.mean.reserve(batch_ * half);
  p.logvar.reserve(batch_ * half);
  for (int b = 0; b < batch_; ++b) {
    const float* base = m.data() + b * 2 * half;
    p.mean.insert(p.mean.end(), base, base + half);
    for (size_t i = 0; i < half; ++i) p.logvar.push_back(std::clamp(base[half + i], -30.f, 20.f));
  }
  return p;
}

VkDeviceSize VaeEncoder::peak_bytes() const { return graph_->peak_bytes(); }

}  // namespace vksd::nn
