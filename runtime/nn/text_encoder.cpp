#include "runtime/nn/text_encoder.h"

#include <functional>

#include "runtime/error.h"

namespace vksd::nn {

namespace {

// CLIPAttention: q/k/v/out projections with bias; the causal mask lets token i see 0..i only.
// `residual` is added by the out_proj kernel.
Tensor clip_self_attention(const Scope& s, Tensor x, int heads, Tensor residual) {
  const int64_t width = x.dim(-1);
  Tensor q = linear(s.sub("q_proj"), x, width);
  Tensor k = linear(s.sub("k_proj"), x, width);
  Tensor v = linear(s.sub("v_proj"), x, width);
  return linear(s.sub("out_proj"), multi_head_attention(q, k, v, heads, /*causal=*/true), width, residual);
}

// CLIPMLP: fc1, quick-GELU x*sigmoid(1.702x) (exact GELU for configs that ask for it), fc2
// (+ `residual`).
Tensor clip_mlp(const Scope& s, Tensor x, const ClipConfig& cfg, Tensor residual) {
  Tensor h = linear(s.sub("fc1"), x, cfg.mlp_dim);
  h = ops::activation(h, cfg.quick_gelu ? ops::Act::QuickGELU : ops::Act::GELU);
  return linear(s.sub("fc2"), h, x.dim(-1), residual);
}

// CLIPEncoderLayer, pre-LayerNorm: x += attn(ln1(x)); x += mlp(ln2(x)).
Tensor clip_encoder_layer(const Scope& s, Tensor x, const ClipConfig& cfg) {
  x = clip_self_attention(s.sub("self_attn"), layer_norm(s.sub("layer_norm1"), x, cfg.ln_eps), cfg.heads, x);
  return clip_mlp(s.sub("mlp"), layer_norm(s.sub("layer_norm2"), x, cfg.ln_eps), cfg, x);
}

// The transformer from token ids: embeddings, encoder layers 0..last (each output handed to
// `on_layer`), final_layer_norm on the last one. `on_embeddings` / `on_layer` may be empty.
Tensor clip_text_transformer(const Scope& root, Tensor ids, const ClipConfig& cfg, int last,
                             const std::function<void(Tensor)>& on_embeddings = {},
                             const std::function<void(Tensor)>& on_layer = {}) {
  const Scope emb = root.sub("embeddings");
  Tensor tokens = emb.w("token_embedding.weight", {cfg.vocab_size, cfg.width});
  Tensor positions = emb.w("position_embedding.weight", {cfg.max_length, cfg.width});
  Tensor x = ops::token_embedding(ids, tokens, positions);
  if (on_embeddings) on_embeddings(x);
  const Scope layers = root.sub("encoder.layers");
  for (int i = 0; i <= last; ++i) {
    x = clip_encoder_layer(layers.sub(i), x, cfg);
    if (on_layer) on_layer(x);
  }
  return layer_norm(root.sub("final_layer_norm"), x, cfg.ln_eps);
}

}  // namespace

struct TextEncoder::Net {
  std::unique_ptr<Graph> graph;
  Tensor ids, embeddings, hidden;
  std::vector<Tensor> layers;  // outputs of layers 0 .. last computed
};

TextEncoder::TextEncoder(Context& ctx, const WeightStore& weights, const ClipConfig& cfg, int batch, NetOptions opts)
    : ctx_(ctx), weights_(weights), cfg_(cfg), batch_(batch), opts_(opts) {
  if (batch < 1) fail("TextEncoder: batch must be >= 1, got " + std::to_string(batch));
  if (cfg.width % cfg.heads != 0)
    fail("TextEncoder: width " + std::to_string(cfg.width) + " is not a multiple of heads " + std::to_string(cfg.heads));
  net_for(1);  // the common case is built and compiled up front
}

TextEncoder::~TextEncoder() = default;

TextEncoder::Net& TextEncoder::net_for(int clip_skip) {
  if (clip_skip < 1 || clip_skip > cfg_.used_layers())
    fail("clip_skip " + std::to_string(clip_skip) + " out of range 1.." + std::to_string(cfg_.used_layers()));
  auto& slot = nets_[clip_skip];
  if (slot) return *slot;

  auto net = std::make_unique<Net>();
  net->graph = std::make_unique<Graph>(ctx_);
  Graph& g = *net->graph;
  if (opts_.scratch) g.use_scratch(opts_.scratch);
  const DeviceWeights weights(weights_);
  net->ids = g.input({batch_, cfg_.max_length}, DType::I32, "token_ids");
  // clip_skip k: the final LayerNorm reads the output of layer (used_layers - k); later layers
  // (and the ones the model skips: SD 2.x's last OpenCLIP block) are not needed and not built.
  net->hidden = clip_text_transformer(
      Scope::root(g, weights, cfg_.prefix), net->ids, cfg_, cfg_.used_layers() - clip_skip,
      [&](Tensor x) {
        net->embeddings = x;
        g.keep(x);
      },
      [&](Tensor x) {
        net->layers.push_back(x);
        g.keep(x);
      });
  g.keep(net->hidden);
  g.compile(opts_.profile);
  slot = std::move(net);
  return *slot;
}

std::vector<float> TextEncoder::encode(const std::vector<int32_t>& ids, int clip_skip) {
  const size_t want = (size_t)batch_ * cfg_.max_length;
  if (ids.size() != want)
    fail("TextEncoder::encode: got " + std::to_string(ids.size()) + " token ids, expected batch " +
         std::to_string(batch_) + " x " + std::to_string(cfg_.max_length));
  for (int32_t id : ids)
    if (id < 0 || id >= cfg_.vocab_size)
      fail("TextEncoder::encode: token id " + std::to_string(id) + " outside the vocabulary (0.." +
           std::to_string(cfg_.vocab_size - 1) + ")");
  Net& net = net_for(clip_skip);
  net.graph->upload_i32(net.ids, ids.data());
  net.graph->run();
  last_ = &net;
  return net.graph->download(net.hidden);
}

std::vector<float> TextEncoder::layer_output(int layer) {
  if (!last_) fail("TextEncoder::layer_output: call encode() first");
  if (layer < 0 || layer >= (int)last_->layers.size())
    fail("TextEncoder::layer_output: layer " + std::to_string(layer) + " was not computed by the last encode() (0.." +
         std::to_string(last_->layers.size() - 1) + ")");
  return last_->graph->download(last_->layers[layer]);
}

std::vector<float> TextEncoder::embeddings() {
  if (!last_) fail("TextEncoder::embeddings: call encode() first");
  return last_->graph->download(last_->embeddings);
}

VkDeviceSize TextEncoder::peak_bytes() const {
  const Net* n = last_ ? last_ : nets_.begin()->second.get();
  return n->graph->peak_bytes();
}

double TextEncoder::flops() const {
  const Net* n = last_ ? last_ : nets_.begin()->second.get();
  return n->graph->flops();
}

}  // namespace vksd::nn

namespace vksd {

std::vector<TensorSpec> clip_layout(const ClipConfig& config) {
  // A dry run over every layer the checkpoint holds (also those the model skips), batch 1. The
  // head count shapes no weight (one head here: the heads of a file may not be known yet).
  ClipConfig cfg = config;
  cfg.heads = 1;
  Graph g;
  const nn::LayoutRecorder weights;
  Tensor ids = g.input({1, cfg.max_length}, DType::I32, "token_ids");
  const nn::Scope root = nn::Scope::root(g, weights, cfg.prefix);
  nn::clip_text_transformer(root, ids, cfg, cfg.layers - 1);
  // The pooled projection (SDXL's second encoder) is applied on the host by the conditioner, not
  // in this graph; the checkpoint must still hold it.
  if (cfg.pooled_dim > 0) root.w("text_projection", {cfg.width, cfg.pooled_dim});
  return weights.specs();
}

}  // namespace vksd
