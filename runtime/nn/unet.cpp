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
  h = conv3x3(s.sub("in_layers.2"), h, out_ch);
  h = ops::add_per_channel(h, linear(s.sub("emb_layers.1"), emb_silu, out_ch));
  h = group_norm(s.sub("out_layers.0"), h, eps, /*silu=*/true);
  Tensor skip = x.dim(1) != out_ch ? conv1x1(s.sub("skip_connection"), x, out_ch) : x;
  return conv3x3(s.sub("out_layers.3"), h, out_ch, /*residual=*/skip);
}

// The attention-map hook (NetOptions::attention_maps): a cross-attention layer hands it its
// to_q input, its projected q and k and its head count. Null when the maps are off, and then
// the graph is exactly the one without the hook.
using AttentionProbe = std::function<void(Tensor q_in, Tensor q, Tensor k, int heads)>;

// CrossAttention: to_q on x, to_k / to_v on the context (x itself for self-attention), all
// without bias and as wide as x; heads of dim_head = channels / heads; to_out.0 with bias,
// plus `residual` (fused into the projection).
Tensor cross_attention(const Scope& s, Tensor x, Tensor context, int heads, Tensor residual,
                       const AttentionProbe* probe = nullptr) {
  const int64_t ch = x.dim(-1);
  Tensor c = context.valid() ? context : x;
  Tensor q = linear_without_bias(s.sub("to_q"), x, ch);
  Tensor k = linear_without_bias(s.sub("to_k"), c, ch);
  Tensor v = linear_without_bias(s.sub("to_v"), c, ch);
  Tensor o = multi_head_attention(q, k, v, heads);
  if (probe) (*probe)(x, q, k, heads);
  return linear(s.sub("to_out.0"), o, ch, residual);
}

// FeedForward with GEGLU (inner dim 4 x dim): proj to 2 x inner (value and gate halves),
// a * gelu(gate), back to dim (+ `residual`).
Tensor feed_forward(const Scope& s, Tensor x, Tensor residual) {
  const int64_t dim = x.dim(-1), inner = 4 * dim;
  Tensor h = ops::geglu(linear(s.sub("net.0.proj"), x, 2 * inner));
  return linear(s.sub("net.2"), h, dim, residual);
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

// proj_in / proj_out of a SpatialTransformer: 1x1 convs (SD 1.x) or linears
// (use_linear_in_transformer, SD 2.x); on the token layout both are the same matrix product.
Tensor projection(const Scope& s, Tensor t, const UNetConfig& cfg) {
  const int64_t ch = t.dim(-1);
  return cfg.use_linear_in_transformer ? linear(s, t, ch) : conv1x1_as_linear(s, t, ch);
}

// SpatialTransformer: GroupNorm, proj_in, pixels as tokens through the transformer blocks,
// proj_out, residual.
Tensor spatial_transformer(const Scope& s, Tensor x, Tensor context, int heads, int depth, const UNetConfig& cfg,
                           const TransformerProbe& probe = {}) {
  const int64_t h = x.dim(2), w = x.dim(3);
  enter(s, "SpatialTransformer");
  Tensor t = ops::nchw_to_nlc(group_norm(s.sub("norm"), x, kTransformerGroupNormEps, /*silu=*/false));
  t = projection(s.sub("proj_in"), t, cfg);
  for (int d = 0; d < depth; ++d) {
    const Scope blk = s.sub("transformer_blocks").sub(d);
    const AttentionProbe p = probe ? probe(blk, d, h, w) : AttentionProbe{};
    t = basic_transformer_block(blk, t, context, heads, cfg.ln_eps, p ? &p : nullptr);
  }
  enter(s, "SpatialTransformer");
  t = projection(s.sub("proj_out"), t, cfg);
  return ops::add(ops::nlc_to_nchw(t, h, w), x);
}

// What UNet::build sees of the network besides its output: every named block output
// ("input_blocks.3", ...) and, per SpatialTransformer, the attention-map probe (maps empty =
// none). A dry run (unet_layout) needs neither.
struct UNetHooks {
  std::function<void(const std::string& name, Tensor)> record;
  std::function<TransformerProbe(const std::string& block, int level, int depth)> maps;
};

// Downsample: conv3x3, stride 2, padding 1.
Tensor downsample(const Scope& s, Tensor x) {
  enter(s, "Downsample");
  return conv(s.sub("op"), x, x.dim(1), 3, ops::Conv2d::down());
}

// Upsample: nearest-neighbour x2, then conv3x3.
Tensor upsample(const Scope& s, Tensor x) {
  enter(s, "Upsample");
  return conv3x3(s.sub("conv"), ops::upsample_nearest2x(x), x.dim(1));
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

namespace {

// The whole network, as the reference's forward(x, timesteps, context, y) (y only with
// adm_in_channels > 0), recorded into root's graph; `hooks` sees every named block output and
// adds the attention-map probes.
Tensor unet_forward(const Scope& root, const UNetConfig& cfg, Tensor x, Tensor t, Tensor context, Tensor y,
                    const UNetHooks& hooks) {
  Graph& g = root.graph();
  const int mc = cfg.model_channels, levels = (int)cfg.channel_mult.size(), emb_dim = cfg.time_embed_dim();
  auto record = [&](const std::string& name, Tensor v) {
    if (hooks.record) hooks.record(name, v);
  };
  auto maps = [&](const std::string& block, int level, int depth) {
    return hooks.maps ? hooks.maps(block, level, depth) : TransformerProbe{};
  };

  // Timestep embedding: sinusoidal features -> time_embed.0 -> SiLU -> time_embed.2. Every
  // ResBlock's emb_layers begins with SiLU, so it is applied once here.
  g.set_scope("time_embed time embedding");
  Tensor t_emb = ops::timestep_embedding(t, mc);
  record("t_emb", t_emb);
  Tensor emb = linear(root.sub("time_embed.0"), t_emb, emb_dim);
  emb = linear(root.sub("time_embed.2"), ops::silu(emb), emb_dim);
  record("time_embed", emb);
  // Vector conditioning (adm_in_channels > 0, SDXL): label_emb.0 = Linear -> SiLU -> Linear on
  // y, added to the time embedding.
  if (y.valid()) {
    g.set_scope("label_emb vector conditioning");
    Tensor label = linear(root.sub("label_emb.0.0"), y, emb_dim);
    label = linear(root.sub("label_emb.0.2"), ops::silu(label), emb_dim);
    record("label_emb", label);
    emb = ops::add(emb, label);
  }
  Tensor emb_silu = ops::silu(emb);

  // Encoder half: each block's output is kept as a skip for the decoder half.
  std::vector<Tensor> skips;
  const Scope in_blocks = root.sub("input_blocks");
  int index = 0;
  enter(in_blocks.sub("0.0"), "conv_in");
  Tensor h = conv3x3(in_blocks.sub("0.0"), x, mc);
  record("input_blocks.0", h);
  skips.push_back(h);
  for (int level = 0; level < levels; ++level) {
    const int64_t ch = (int64_t)mc * cfg.channel_mult[level];
    for (int r = 0; r < cfg.num_res_blocks; ++r) {
      const Scope blk = in_blocks.sub(++index);
      h = res_block(blk.sub(0), h, emb_silu, ch, cfg.gn_eps);
      if (const int depth = cfg.depth_at(level))
        h = spatial_transformer(blk.sub(1), h, context, cfg.heads_for((int)ch), depth, cfg,
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
    h = res_block(mid.sub(0), h, emb_silu, ch, cfg.gn_eps);
    const int depth = cfg.middle_depth();
    if (depth > 0)
      h = spatial_transformer(mid.sub(1), h, context, cfg.heads_for((int)ch), depth, cfg,
                              maps("middle", levels - 1, depth));
    h = res_block(mid.sub(depth > 0 ? 2 : 1), h, emb_silu, ch, cfg.gn_eps);
    record("middle_block", h);
  }

  // Decoder half: the skips are consumed in reverse, concatenated along channels.
  const Scope out_blocks = root.sub("output_blocks");
  index = 0;
  for (int level = levels - 1; level >= 0; --level) {
    const int64_t ch = (int64_t)mc * cfg.channel_mult[level];
    for (int i = 0; i <= cfg.num_res_blocks; ++i, ++index) {
      const Scope blk = out_blocks.sub(index);
      enter(blk.sub(0), "ResBlock");  // the skip concatenation feeds the ResBlock
      h = ops::concat_channels(h, skips.back());
      skips.pop_back();
      h = res_block(blk.sub(0), h, emb_silu, ch, cfg.gn_eps);
      int sub = 1;
      if (const int depth = cfg.depth_at(level))
        h = spatial_transformer(blk.sub(sub++), h, context, cfg.heads_for((int)ch), depth, cfg,
                                maps("output " + std::to_string(index), level, depth));
      if (level > 0 && i == cfg.num_res_blocks) h = upsample(blk.sub(sub), h);
      record("output_blocks." + std::to_string(index), h);
    }
  }

  // Head: GroupNorm32 + SiLU, conv3x3 to the output channels.
  g.set_scope("out output head");
  h = group_norm(root.sub("out.0"), h, cfg.gn_eps, /*silu=*/true);
  Tensor out = conv3x3(root.sub("out.2"), h, cfg.out_channels);
  g.set_scope("");
  return out;
}

}  // namespace

void UNet::build() {
  graph_ = std::make_unique<Graph>(ctx_);
  Graph& g = *graph_;
  if (opts_.scratch) g.use_scratch(opts_.scratch);
  const DeviceWeights weights(weights_);
  const DType act = opts_.activations.value_or(weights.storage());
  x_ = g.input({batch_, cfg_.in_channels, h_, w_}, act, "x");
  t_ = g.input({batch_}, DType::F32, "t");  // f32: fractional timesteps near 1000 need the bits
  context_ = g.input({batch_, context_len_, cfg_.context_dim}, act, "context");
  if (cfg_.adm_in_channels > 0) y_ = g.input({batch_, cfg_.adm_in_channels}, act, "y");

  UNetHooks hooks;
  hooks.record = [&](const std::string& name, Tensor t) {
    blocks_[name] = t;
    if (opts_.keep_blocks) g.keep(t);
  };
  // Attention maps (opts_.attention_maps): per cross-attention layer, P = mean over heads of
  // softmax(q kᵀ / sqrt(d)) for the last batch entry (the prompt; the negative prompt is entry 0
  // under guidance), kept for the host. Without the option the probe is empty and the graph is
  // the plain one.
  if (opts_.attention_maps)
    hooks.maps = [&](const std::string& block, int level, int depth) -> TransformerProbe {
      return [&, block, level, depth](const Scope& blk, int d, int64_t hh, int64_t ww) -> AttentionProbe {
        return [&, block, level, blk, d, hh, ww](Tensor q_in, Tensor q, Tensor k, int heads) {
          const std::string root_prefix = kUNetPrefix;
          std::string scope = blk.prefix();
          if (scope.rfind(root_prefix, 0) == 0) scope = scope.substr(root_prefix.size());
          if (opts_.keep_blocks) hooks.record(scope + ".norm2", q_in);
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

  out_ = unet_forward(Scope::root(g, weights, kUNetPrefix), cfg_, x_, t_, context_, y_, hooks);
  g.keep(out_);
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

namespace vksd {

std::vector<TensorSpec> unet_layout(const UNetConfig& config) {
  // The head count splits the attention width and shapes no weight: one head, so that the
  // layout of a file whose heads are not known yet (vksd info) can be listed.
  UNetConfig cfg = config;
  cfg.num_heads = 1, cfg.num_head_channels = -1;
  if (cfg.channel_mult.empty() || cfg.attention_levels.size() != cfg.channel_mult.size())
    fail("UNet config: channel_mult and attention_levels must be non-empty and of equal length");
  if (!cfg.transformer_depths.empty() && cfg.transformer_depths.size() != cfg.channel_mult.size())
    fail("UNet config: transformer_depths must have one entry per level");
  // A dry run of the network on the smallest latent it accepts, batch 1, one context token.
  Graph g;
  const nn::LayoutRecorder weights;
  const int64_t size = int64_t{1} << (cfg.channel_mult.size() - 1);
  const DType dt = weights.storage();
  Tensor x = g.input({1, cfg.in_channels, size, size}, dt, "x");
  Tensor t = g.input({1}, DType::F32, "t");
  Tensor context = g.input({1, 1, cfg.context_dim}, dt, "context");
  Tensor y = cfg.adm_in_channels > 0 ? g.input({1, cfg.adm_in_channels}, dt, "y") : Tensor{};
  nn::unet_forward(nn::Scope::root(g, weights, kUNetPrefix), cfg, x, t, context, y, {});
  return weights.specs();
}

}  // namespace vksd
