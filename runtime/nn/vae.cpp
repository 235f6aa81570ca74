#include "runtime/nn/vae.h"

#include <algorithm>

#include "runtime/error.h"
#include "runtime/model/network_prefixes.h"

namespace vksd::nn {

namespace {

// Every GroupNorm of the VAE goes through here, so that a part built for tiled runs
// (VaeNorms::Selectable) can normalise with statistics the host gives (merged over all tiles)
// and expose its own. The choice is made per run by two 0/1 weight inputs,
// stats = own * use_own + given * use_given, so one compiled graph serves both.
struct Norms {
  VaeNorms mode = VaeNorms::Own;
  std::vector<Tensor> given, own;
  Tensor use_own, use_given;

  // reuse_input: x is not read again, so the result may overwrite it (ops::group_norm).
  Tensor operator()(const Scope& s, Tensor x, float eps, bool silu, bool reuse_input = false) {
    if (mode == VaeNorms::Own) return group_norm(s, x, eps, silu, reuse_input);
    Graph& g = s.graph();
    const int64_t c = x.dim(1), n = x.dim(0) * kGroups * 2;
    if (!use_own.valid()) {
      use_own = g.input({n}, DType::F32, "use own statistics");
      use_given = g.input({n}, DType::F32, "use given statistics");
    }
    Tensor mine = ops::group_norm_stats(x, kGroups, eps);
    g.keep(mine);
    own.push_back(mine);
    given.push_back(g.input({n}, DType::F32, "given statistics"));
    Tensor stats = ops::add(ops::mul(mine, use_own), ops::mul(given.back(), use_given));
    Tensor gamma = s.w("weight", {c});
    Tensor beta = s.w("bias", {c});
    return ops::group_norm_apply(x, gamma, beta, stats, kGroups, silu, reuse_input);
  }
  static constexpr int kGroups = 32;
};

// ResnetBlock (no time embedding): norm1+SiLU, conv1, norm2+SiLU, (dropout), conv2, + x;
// nin_shortcut (1x1) when the channel count changes.
// Memory: a norm overwrites its input when nothing reads it later — always for norm2; for
// norm1 when the shortcut is a convolution, computed first. At the decoder's full-resolution
// level that saves a 128-channel image: 322 -> 258 MiB of activations at 512x512 in fp16.
Tensor resnet_block(const Scope& s, Tensor x, int64_t out_ch, float eps, Norms& norm) {
  const bool nin = x.dim(1) != out_ch;
  Tensor skip = nin ? conv1x1(s.sub("nin_shortcut"), x, out_ch) : x;
  Tensor h = conv3x3(s.sub("conv1"), norm(s.sub("norm1"), x, eps, /*silu=*/true, /*reuse_input=*/nin), out_ch);
  return conv3x3(s.sub("conv2"), norm(s.sub("norm2"), h, eps, /*silu=*/true, /*reuse_input=*/true), out_ch,
                 /*residual=*/skip);
}

// AttnBlock: one head over all h*w pixels, q/k/v/proj_out 1x1 convs (applied as linears on the
// token layout), scale 1/sqrt(C), residual.
Tensor attn_block(const Scope& s, Tensor x, float eps, Norms& norm) {
  const int64_t c = x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor t = ops::nchw_to_nlc(norm(s.sub("norm"), x, eps, /*silu=*/false));
  Tensor q = conv1x1_as_linear(s.sub("q"), t, c);
  Tensor k = conv1x1_as_linear(s.sub("k"), t, c);
  Tensor v = conv1x1_as_linear(s.sub("v"), t, c);
  Tensor o = conv1x1_as_linear(s.sub("proj_out"), multi_head_attention(q, k, v, /*heads=*/1), c);
  return ops::add(x, ops::nlc_to_nchw(o, h, w));
}

// mid: block_1, attn_1, block_2 (shared by Encoder and Decoder).
Tensor mid_block(const Scope& s, Tensor x, float eps, Norms& norm) {
  const int64_t ch = x.dim(1);
  x = resnet_block(s.sub("block_1"), x, ch, eps, norm);
  x = attn_block(s.sub("attn_1"), x, eps, norm);
  return resnet_block(s.sub("block_2"), x, ch, eps, norm);
}

// The VAEs of SD (attn_resolutions = []) have attention only in the mid blocks.

// Encoder, first part: image -> conv_in and the down levels (the resolution-changing part).
Tensor encoder_head(const Scope& s, Tensor x, const VaeConfig& cfg, Norms& norm) {
  const int levels = (int)cfg.ch_mult.size();
  Tensor h = conv3x3(s.sub("conv_in"), x, cfg.ch);
  for (int i = 0; i < levels; ++i) {
    const Scope down = s.sub("down").sub(i);
    for (int j = 0; j < cfg.num_res_blocks; ++j)
      h = resnet_block(down.sub("block").sub(j), h, (int64_t)cfg.ch * cfg.ch_mult[i], cfg.gn_eps, norm);
    // Downsample pads right and bottom only, then a 3x3 stride-2 conv without padding.
    if (i != levels - 1) h = conv(down.sub("downsample.conv"), h, h.dim(1), 3, ops::Conv2d::down_asym());
  }
  return h;
}

// Encoder, second part: mid, norm_out+SiLU, conv_out -> 2 * z_channels moments (double_z: mean
// and log-variance; before quant_conv).
Tensor encoder_tail(const Scope& s, Tensor h, const VaeConfig& cfg, Norms& norm) {
  h = mid_block(s.sub("mid"), h, cfg.gn_eps, norm);
  h = norm(s.sub("norm_out"), h, cfg.gn_eps, /*silu=*/true);
  return conv3x3(s.sub("conv_out"), h, 2 * cfg.z_channels);
}

// Decoder, first part: z_channels latent -> conv_in (to the deepest level's channels), mid
// (at latent resolution).
Tensor decoder_head(const Scope& s, Tensor z, const VaeConfig& cfg, Norms& norm) {
  Tensor h = conv3x3(s.sub("conv_in"), z, (int64_t)cfg.ch * cfg.ch_mult.back());
  return mid_block(s.sub("mid"), h, cfg.gn_eps, norm);
}

// Decoder, second part: the up levels, norm_out+SiLU, conv_out -> image.
Tensor decoder_tail(const Scope& s, Tensor h, const VaeConfig& cfg, Norms& norm) {
  const int levels = (int)cfg.ch_mult.size();
  for (int i = levels - 1; i >= 0; --i) {
    const Scope up = s.sub("up").sub(i);
    for (int j = 0; j <= cfg.num_res_blocks; ++j)
      h = resnet_block(up.sub("block").sub(j), h, (int64_t)cfg.ch * cfg.ch_mult[i], cfg.gn_eps, norm);
    if (i != 0) h = conv3x3(up.sub("upsample.conv"), ops::upsample_nearest2x(h), h.dim(1));
  }
  h = norm(s.sub("norm_out"), h, cfg.gn_eps, /*silu=*/true);
  return conv3x3(s.sub("conv_out"), h, cfg.out_channels);
}

// quant_conv: the encoder's moments -> 2 x embed_dim; post_quant_conv: latent -> z_channels.
Tensor quant_conv(const Scope& root, Tensor moments, const VaeConfig& cfg) {
  return conv1x1(root.sub("quant_conv"), moments, 2 * cfg.embed_dim);
}
Tensor post_quant_conv(const Scope& root, Tensor z, const VaeConfig& cfg) {
  return conv1x1(root.sub("post_quant_conv"), z, cfg.z_channels);
}

}  // namespace

VaeDecoder::VaeDecoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch, int latent_h,
                       int latent_w, NetOptions opts)
    : ctx_(ctx), cfg_(cfg), batch_(batch), h_(latent_h), w_(latent_w) {
  if (batch < 1 || latent_h < 1 || latent_w < 1)
    fail("VaeDecoder: batch " + std::to_string(batch) + " and latent size " + std::to_string(latent_h) + "x" +
         std::to_string(latent_w) + " must be positive");
  graph_ = std::make_unique<Graph>(ctx);
  Graph& g = *graph_;
  if (opts.scratch) g.use_scratch(opts.scratch);
  const DeviceWeights source(weights);
  const Scope root = Scope::root(g, source, kVaePrefix);
  z_ = g.input({batch, cfg.embed_dim, latent_h, latent_w}, opts.activations.value_or(weights.storage()), "z");
  Norms norm;
  Tensor h = post_quant_conv(root, z_, cfg);
  h = decoder_head(root.sub("decoder"), h, cfg, norm);
  image_ = decoder_tail(root.sub("decoder"), h, cfg, norm);
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
  if (opts.scratch) g.use_scratch(opts.scratch);
  const DeviceWeights source(weights);
  const Scope root = Scope::root(g, source, kVaePrefix);
  image_ = g.input({batch, cfg.in_channels, image_h, image_w}, opts.activations.value_or(weights.storage()), "image");
  Norms norm;
  Tensor h = encoder_head(root.sub("encoder"), image_, cfg, norm);
  h = encoder_tail(root.sub("encoder"), h, cfg, norm);
  moments_ = quant_conv(root, h, cfg);
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

// ---- parts ------------------------------------------------------------------------------------

VaePartNet::VaePartNet(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, VaePart part, int batch,
                       int in_h, int in_w, VaeNorms norms, NetOptions opts) {
  const bool image_in = part == VaePart::EncoderHead;
  const int f = cfg.downsample_factor();
  if (batch < 1 || in_h < 1 || in_w < 1 || (image_in && (in_h % f || in_w % f)))
    fail("VaePartNet: batch " + std::to_string(batch) + " and input size " + std::to_string(in_h) + "x" +
         std::to_string(in_w) + " must be positive" + (image_in ? " multiples of " + std::to_string(f) : std::string()));
  graph_ = std::make_unique<Graph>(ctx);
  Graph& g = *graph_;
  if (opts.scratch) g.use_scratch(opts.scratch);
  const DeviceWeights source(weights);
  const Scope root = Scope::root(g, source, kVaePrefix);
  const DType dt = opts.activations.value_or(weights.storage());
  const int64_t top = (int64_t)cfg.ch * cfg.ch_mult.back();  // channels between head and tail
  Norms norm;
  norm.mode = norms;
  switch (part) {
    case VaePart::DecoderHead:
      in_ = g.input({batch, cfg.embed_dim, in_h, in_w}, dt, "z");
      out_ = decoder_head(root.sub("decoder"), post_quant_conv(root, in_, cfg), cfg, norm);
      break;
    case VaePart::DecoderTail:
      in_ = g.input({batch, top, in_h, in_w}, dt, "decoder mid output");
      out_ = decoder_tail(root.sub("decoder"), in_, cfg, norm);
      break;
    case VaePart::EncoderHead:
      in_ = g.input({batch, cfg.in_channels, in_h, in_w}, dt, "image");
      out_ = encoder_head(root.sub("encoder"), in_, cfg, norm);
      break;
    case VaePart::EncoderTail:
      in_ = g.input({batch, top, in_h, in_w}, dt, "encoder down output");
      out_ = quant_conv(root, encoder_tail(root.sub("encoder"), in_, cfg, norm), cfg);
      break;
  }
  given_stats_ = std::move(norm.given);
  own_stats_ = std::move(norm.own);
  use_own_ = norm.use_own, use_given_ = norm.use_given;
  g.keep(out_);
  g.compile(opts.profile);
  if (use_own_.valid()) {
    for (Tensor t : given_stats_) g.upload(t, std::vector<float>((size_t)t.numel(), 0.f));
    use_given_norm_stats(false);
  }
}

void VaePartNet::use_given_norm_stats(bool given) {
  if (!use_own_.valid()) fail("VaePartNet: built with VaeNorms::Own, its GroupNorm statistics are not selectable");
  graph_->upload(use_own_, std::vector<float>((size_t)use_own_.numel(), given ? 0.f : 1.f));
  graph_->upload(use_given_, std::vector<float>((size_t)use_given_.numel(), given ? 1.f : 0.f));
}

VaePartNet::~VaePartNet() = default;

const Shape& VaePartNet::input_shape() const { return in_.shape(); }
const Shape& VaePartNet::output_shape() const { return out_.shape(); }

void VaePartNet::set_norm_stats(int k, const std::vector<float>& stats) {
  if (k < 0 || k >= (int)given_stats_.size()) fail("VaePartNet: no given statistics for GroupNorm " + std::to_string(k));
  if (stats.size() != (size_t)given_stats_[(size_t)k].numel())
    fail("VaePartNet: GroupNorm " + std::to_string(k) + " statistics have " + std::to_string(stats.size()) +
         " values, expected " + std::to_string(given_stats_[(size_t)k].numel()));
  graph_->upload(given_stats_[(size_t)k], stats);
}

std::vector<float> VaePartNet::norm_stats(int k) {
  if (k < 0 || k >= (int)own_stats_.size()) fail("VaePartNet: no statistics of GroupNorm " + std::to_string(k));
  return graph_->download(own_stats_[(size_t)k]);
}

std::vector<float> VaePartNet::run(const std::vector<float>& x) {
  if (x.size() != (size_t)in_.numel())
    fail("VaePartNet::run: got " + std::to_string(x.size()) + " floats, expected " + shape_str(in_.shape()));
  graph_->upload(in_, x);
  graph_->run();
  return graph_->download(out_);
}

VkDeviceSize VaePartNet::peak_bytes() const { return graph_->peak_bytes(); }

}  // namespace vksd::nn

namespace vksd {

std::vector<TensorSpec> vae_layout(const VaeConfig& cfg) {
  if (cfg.ch_mult.empty()) fail("VAE config: ch_mult must not be empty");
  // A dry run of the encoder (an image of one latent pixel) and the decoder, batch 1.
  Graph g;
  const nn::LayoutRecorder weights;
  const nn::Scope root = nn::Scope::root(g, weights, kVaePrefix);
  const int64_t f = cfg.downsample_factor();
  nn::Norms norm;
  Tensor h = nn::encoder_head(root.sub("encoder"), g.input({1, cfg.in_channels, f, f}, weights.storage()), cfg, norm);
  nn::quant_conv(root, nn::encoder_tail(root.sub("encoder"), h, cfg, norm), cfg);
  h = nn::post_quant_conv(root, g.input({1, cfg.embed_dim, 1, 1}, weights.storage()), cfg);
  nn::decoder_tail(root.sub("decoder"), nn::decoder_head(root.sub("decoder"), h, cfg, norm), cfg, norm);
  return weights.specs();
}

}  // namespace vksd
