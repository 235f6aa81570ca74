#include "runtime/nn/unet.h"

#include <functional>

#include "runtime/error.h"

namespace vksd::nn {

namespace {

// SpatialTransformer's GroupNorm is LDM's Normalize(): eps 1e-6, unlike the ResBlocks'
// GroupNorm32 (cfg.gn_eps, 1e-5).
constexpr float kTransformerGroupNormEps = 1e-6f;

// Names the module the next dispatches belong to (Graph::set_scope, for profiles): the weight
// path below model.diffusion_model and the module's kind, e.g. "input_blocks.1.0 ResBlock".
void enter(const Scope& s, const char* kind) {
  const std::string root = kUNetPrefix;
  std::string path = s.prefix();
  if (path.rfind(root, 0) == 0) path = path.substr(root.size());
  s.graph().set_scope(path + " " + kind);
}

// ResBlock: in_layers (GroupNorm32+SiLU, conv3x3); + emb_layers (SiLU, Linear) per channel;
// out_layers (GroupNorm32+SiLU, dropout = identity, conv3x3); + skip_connection(x), a 1x1 conv
// when the channel count changes. `emb_silu` is SiLU(time embedding), shared by all ResBlocks.
Tensor res_block(const Scope& s, Tensor x, Tensor emb_silu, int64_t out_ch, float eps) {
  enter(s, "ResBlock");
  Tensor h = group_norm(s.sub("in_layers.0"), x, eps, /*silu=*/true);
  h = conv3x3(s.sub("in_layers.2"), h);
  if (h.dim(1) != out_ch)
    fail(s.quoted("in_layers.2") + " has " + std::to_string(h.dim(1)) + " output channels, expected " +
         std::to_string(out_ch));
  h = ops::add_per_channel(h, linear(s.sub("emb_layers.1"), emb_silu));
  h = group_norm(s.sub("out_layers.0"), h, eps, /*silu=*/true);
  Tensor skip = s.has("skip_connection.weight") ? conv1x1(s.sub("skip_connection"), x) : x;
  return conv3x3(s.sub("out_layers.3"), h, /*residual=*/skip);
}

// The attention-map hook (NetOptions::attention_maps): a cross-attention layer hands it its
// to_q input, its projected q and k and its head count. Null when the maps are off, and then
// the graph is exactly the one without the hook.
using AttentionProbe = std::function<void(Tensor q_in, Tensor q, Tensor k, int heads)>;

// CrossAttention: to_q on x, to_k / to_v on the context (x itself for self-attention), all
// without bias; heads of dim_head = channels / heads; to_out.0 with bias, plus `residual`
// (fused into the projection).
Tensor cross_attention(const Scope& s, Tensor x, Tensor context, int heads, Tensor residual,
                       const AttentionProbe* probe = nullptr) {
  Tensor c = context.valid() ? context : x;
  Tensor q = linear(s.sub("to_q"), x);
  Tensor k = linear(s.sub("to_k"), c);
  Tensor v = linear(s.sub("to_v"), c);
  Tensor o = multi_head_attention(q, k, v, heads);
  if (probe) (*probe)(x, q, k, heads);
  return linear(s.sub("to_out.0"), o, residual);
}

// FeedForward with GEGLU: proj to 2 x inner, a * gelu(gate), back to dim (+ `residual`).
Tensor feed_forward(const Scope& s, Tensor x, Tensor residual) {
  Tensor h = ops::geglu(linear(s.sub("net.0.proj"), x));
  return linear(s.sub("net.2"), h, residual);
}

// BasicTransformerBlock: self-attention, cross-attention on the text context, feed-forward,
// each pre-LayerNorm with a residual.
Tensor basic_transformer_block(const Scope& s, Tensor x, Tensor context, int heads, float ln_eps,
                               const AttentionProbe* probe = nullptr) {
  enter(s.sub("attn1"), "self-attention");
  x = cross_attention(s.sub("attn1"), layer_norm(s.sub("norm1"), x, ln_eps), {}, heads, /*residual=*/x);
  enter(s.sub("attn2"), "cross-attention");
  x = cross_attention(s.sub("attn2"), layer_norm(s.sub("norm2"), x, ln_eps), context, heads, /*residual=*/x, probe);
  enter(s.sub("ff"), "feed-forward");
  x = feed_forward(s.sub("ff"), layer_norm(s.sub("norm3"), x, ln_eps), /*residual=*/x);
  return x;
}

// Per transformer block of a SpatialTransformer: the attention-map hook for block `depth`
// (of the scope `block`) on a grid of h x w. Empty when the maps are off.
using TransformerProbe = std::function<AttentionProbe(const Scope& block, int depth, int64_t h, int64_t w)>;

// SpatialTransformer: GroupNorm, proj_in, pixels as tokens through the transformer blocks,
// proj_out, residual. proj_in/proj_out are 1x1 convs (SD 1.x) or linears (SD 2.x); on the
// token layout both are the same matrix product.
Tensor spatial_transformer(const Scope& s, Tensor x, Tensor context, int heads, int depth, const UNetConfig& cfg,
                           const TransformerProbe& probe = {}) {
  const int64_t h = x.dim(2), w = x.dim(3);
  enter(s, "SpatialTransformer");
  Tensor t = ops::nchw_to_nlc(group_norm(s.sub("norm"), x, kTransformerGroupNormEps, /*silu=*/false));
  t = conv1x1_as_linear(s.sub("proj_in"), t);
  for (int d = 0; d < depth; ++d) {
    const Scope blk = s.sub("transformer_blocks").sub(d);
    const AttentionProbe p = probe ? probe(blk, d, h, w) : AttentionProbe{};
    t = basic_transformer_block(blk, t, context, heads, cfg.ln_eps, p ? &p : nullptr);
  }
  enter(s, "SpatialTransformer");
  t = conv1x1_as_linear(s.sub("proj_out"), t);
  return ops::add(ops::nlc_to_nchw(t, h, w), x);
}

// Downsample: conv3x3, stride 2, padding 1.
Tensor downsample(const Scope& s, Tensor x) {
  enter(s, "Downsample");
  return conv(s.sub("op"), x, ops::Conv2d::down());
}

// Upsample: nearest-neighbour x2, then conv3x3.
Tensor upsample(const Scope& s, Tensor x) {
  enter(s, "Upsample");
  return conv3x3(s.sub("conv"), ops::upsample_nearest2x(x));
}

}  // namespace

UNet::UNet(Context& ctx, const WeightStore& weights, const UNetConfig& cfg, int batch, int latent_h, int latent_w,
           int context_len, NetOptions opts)
    : ctx_(ctx), weights_(weights), cfg_(cfg), batch_(batch), h_(latent_h), w_(latent_w), context_len_(context_len),
      opts_(opts) {
  const int levels = (int)cfg.channel_mult.size();
  const int factor = 1 << (levels - 1);
  if (batch < 1 || context_len < 1) fail("UNet: batch and context length must be >= 1");
  if (latent_h < factor || latent_w < factor || latent_h % factor || latent_w % factor)
    fail("UNet: latent size " + std::to_string(latent_h) + "x" + std::to_string(latent_w) + " must be a multiple of " +
         std::to_string(factor) + " (the UNet halves it " + std::to_string(levels - 1) + " times)");
  if ((int)cfg.attention_levels.size() != levels)
    fail("UNet: attention_levels has " + std::to_string(cfg.attention_levels.size()) + " entries for " +
         std::to_string(levels) + " levels");
  if (!cfg.transformer_depths.empty() && (int)cfg.transformer_depths.size() != levels)
    fail("UNet: transformer_depths has " + std::to_string(cfg.transformer_depths.size()) + " entries for " +
         std::to_string(levels) + " levels");
  build();
}

UNet::~UNet() = default;

void UNet::build() {
  graph_ = std::make_unique<Graph>(ctx_);
  Graph& g = *graph_;
  const Scope root = Scope::root(g, weights_, kUNetPrefix);
  const DType act = opts_.activations.value_or(weights_.storage());
  const int mc = cfg_.model_channels, levels = (int)cfg_.channel_mult.size();
  auto record = [&](const std::string& name, Tensor t) {
    blocks_[name] = t;
    if (opts_.keep_blocks) g.keep(t);
  };

  x_ = g.input({batch_, cfg_.in_channels, h_, w_}, act, "x");
  t_ = g.input({batch_}, DType::F32, "t");  // f32: fractional timesteps near 1000 need the bits
  context_ = g.input({batch_, context_len_, cfg_.context_dim}, act, "context");
  if (cfg_.adm_in_channels > 0) y_ = g.input({batch_, cfg_.adm_in_channels}, act, "y");

  // Timestep embedding: sinusoidal features -> time_embed.0 -> SiLU -> time_embed.2. Every
  // ResBlock's emb_layers begins with SiLU, so it is applied once here.
  g.set_scope("time_embed time embedding");
  Tensor t_emb = ops::timestep_embedding(t_, mc);
  record("t_emb", t_emb);
  Tensor emb = linear(root.sub("time_embed.0"), t_emb);
  emb = linear(root.sub("time_embed.2"), ops::silu(emb));
  record("time_embed", emb);
  // Vector conditioning (adm_in_channels > 0, SDXL): label_emb.0 = Linear -> SiLU -> Linear on
  // y, added to the time embedding.
  if (y_.valid()) {
    g.set_scope("label_emb vector conditioning");
    Tensor label = linear(root.sub("label_emb.0.0"), y_);
    label = linear(root.sub("label_emb.0.2"), ops::silu(label));
    record("label_emb", label);
    emb = ops::add(emb, label);
  }
  Tensor emb_silu = ops::silu(emb);

  // Attention maps (opts_.attention_maps): per cross-attention layer, P = mean over heads of
  // softmax(q kᵀ / sqrt(d)) for the last batch entry (the prompt; the negative prompt is entry 0
  // under guidance), kept for the host. Without the option the probe is empty and the graph is
  // the plain one.
  auto maps = [&](const std::string& block, int level, int depth) -> TransformerProbe {
    if (!opts_.attention_maps) return {};
    return [&, block, level, depth](const Scope& blk, int d, int64_t hh, int64_t ww) -> AttentionProbe {
      return [&, block, level, blk, d, hh, ww](Tensor q_in, Tensor q, Tensor k, int heads) {
        const std::string root_prefix = kUNetPrefix;
        std::string scope = blk.prefix();
        if (scope.rfind(root_prefix, 0) == 0) scope = scope.substr(root_prefix.size());
        if (opts_.keep_blocks) record(scope + ".norm2", q_in);
        Tensor probs = ops::attention_probs(q, k, heads, batch_ - 1);
        g.keep(probs);
        AttentionLayer layer;
        layer.block = depth > 1 ? block + " #" + std::to_string(d) : block;
        layer.scope = scope;
        layer.level = level;
        layer.height = (int)hh, layer.width = (int)ww;
        layer.tokens = (int)k.dim(1);
        attention_layers_.push_back(layer);
        attention_probs_.push_back(probs);
      };
    };
  };

  // Encoder half: each block's output is kept as a skip for the decoder half.
  std::vector<Tensor> skips;
  const Scope in_blocks = root.sub("input_blocks");
  int index = 0;
  enter(in_blocks.sub("0.0"), "conv_in");
  Tensor h = conv3x3(in_blocks.sub("0.0"), x_);
  record("input_blocks.0", h);
  skips.push_back(h);
  for (int level = 0; level < levels; ++level) {
    const int64_t ch = (int64_t)mc * cfg_.channel_mult[level];
    for (int r = 0; r < cfg_.num_res_blocks; ++r) {
      const Scope blk = in_blocks.sub(++index);
      h = res_block(blk.sub(0), h, emb_silu, ch, cfg_.gn_eps);
      if (const int depth = cfg_.depth_at(level))
        h = spatial_transformer(blk.sub(1), h, context_, cfg_.heads_for((int)ch), depth, cfg_,
                                maps("input " + std::to_string(index), level, depth));
      record("input_blocks." + std::to_string(index), h);
      skips.push_back(h);
    }
    if (level != levels - 1) {
      h = downsample(in_blocks.sub(++index).sub(0), h);
      record("input_blocks." + std::to_string(index), h);
      skips.push_back(h);
    }
  }

  // Middle: ResBlock, SpatialTransformer, ResBlock at the deepest level.
  {
    const Scope mid = root.sub("middle_block");
    const int64_t ch = h.dim(1);
    h = res_block(mid.sub(0), h, emb_silu, ch, cfg_.gn_eps);
    const int depth = cfg_.middle_depth();
    if (depth > 0)
      h = spatial_transformer(mid.sub(1), h, context_, cfg_.heads_for((int)ch), depth, cfg_,
                              maps("middle", levels - 1, depth));
    h = res_block(mid.sub(depth > 0 ? 2 : 1), h, emb_silu, ch, cfg_.gn_eps);
    record("middle_block", h);
  }

  // Decoder half: the skips are consumed in reverse, concatenated along channels.
  const Scope out_blocks = root.sub("output_blocks");
  index = 0;
  for (int level = levels - 1; level >= 0; --level) {
    const int64_t ch = (int64_t)mc * cfg_.channel_mult[level];
    for (int i = 0; i <= cfg_.num_res_blocks; ++i, ++index) {
      const Scope blk = out_blocks.sub(index);
      enter(blk.sub(0), "ResBlock");  // the skip concatenation feeds the ResBlock
      h = ops::concat_channels(h, skips.back());
      skips.pop_back();
      h = res_block(blk.sub(0), h, emb_silu, ch, cfg_.gn_eps);
      int sub = 1;
      if (const int depth = cfg_.depth_at(level))
        h = spatial_transformer(blk.sub(sub++), h, context_, cfg_.heads_for((int)ch), depth, cfg_,
                                maps("output " + std::to_string(index), level, depth));
      if (level > 0 && i == cfg_.num_res_blocks) h = upsample(blk.sub(sub), h);
      record("output_blocks." + std::to_string(index), h);
    }
  }

  // Head: GroupNorm32 + SiLU, conv3x3 to the output channels.
  g.set_scope("out output head");
  h = group_norm(root.sub("out.0"), h, cfg_.gn_eps, /*silu=*/true);
  out_ = conv3x3(root.sub("out.2"), h);
  if (out_.dim(1) != cfg_.out_channels)
    fail("UNet: 'out.2' gives " + std::to_string(out_.dim(1)) + " channels, config says " +
         std::to_string(cfg_.out_channels));
  g.keep(out_);
  g.set_scope("");
  g.compile(opts_.profile);
}

void UNet::set_y(const std::vector<float>& y) {
  if (!y_.valid()) fail("UNet::set_y: this UNet has no vector input (adm_in_channels is 0)");
  const size_t want = (size_t)shape_numel(y_.shape());
  if (y.size() != want)
    fail("UNet::set_y: got " + std::to_string(y.size()) + " floats, expected " + shape_str(y_.shape()));
  graph_->upload(y_, y);
  y_set_ = true;
}

void UNet::set_context(const std::vector<float>& ctx) {
  const size_t want = (size_t)shape_numel(context_.shape());
  if (ctx.size() != want)
    fail("UNet::set_context: got " + std::to_string(ctx.size()) + " floats, expected " + shape_str(context_.shape()));
  graph_->upload(context_, ctx);
  context_set_ = true;
}

std::vector<float> UNet::forward(const std::vector<float>& x, const std::vector<float>& t) {
  if (x.size() != (size_t)x_.numel())
    fail("UNet::forward: x has " + std::to_string(x.size()) + " floats, expected " + shape_str(x_.shape()));
  if (t.size() != (size_t)batch_)
    fail("UNet::forward: " + std::to_string(t.size()) + " timesteps for batch " + std::to_string(batch_));
  if (!context_set_) fail("UNet::forward: call set_context() first");
  if (y_.valid() && !y_set_) fail("UNet::forward: this UNet takes a vector input y: call set_y() first");
  graph_->upload(x_, x);
  graph_->upload(t_, t);
  graph_->run();
  return graph_->download(out_);
}

std::vector<float> UNet::block_output(const std::string& name) {
  if (!opts_.keep_blocks) fail("UNet::block_output: construct the UNet with NetOptions::keep_blocks");
  auto it = blocks_.find(name);
  if (it == blocks_.end()) fail("UNet::block_output: no block named '" + name + "'");
  return graph_->download(it->second);
}

std::vector<std::string> UNet::block_names() const {
  std::vector<std::string> r;
  for (auto& [k, v] : blocks_) r.push_back(k);
  return r;
}

std::vector<float> UNet::attention_probs(size_t i) {
  if (!opts_.attention_maps) fail("UNet::attention_probs: construct the UNet with NetOptions::attention_maps");
  if (i >= attention_probs_.size())
    fail("UNet::attention_probs: layer " + std::to_string(i) + " of " + std::to_string(attention_probs_.size()));
  return graph_->download(attention_probs_[i]);
}

VkDeviceSize UNet::peak_bytes() const { return graph_->peak_bytes(); }

}  // namespace vksd::nn
