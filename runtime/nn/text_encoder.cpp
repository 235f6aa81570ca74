#include "runtime/nn/text_encoder.h"

#include "runtime/error.h"

namespace vksd::nn {

namespace {

// CLIPAttention: q/k/v/out projections with bias; the causal mask lets token i see 0..i only.
// `residual` is added by the out_proj kernel.
Tensor clip_self_attention(const Scope& s, Tensor x, int heads, Tensor residual) {
  Tensor q = linear(s.sub("q_proj"), x);
  Tensor k = linear(s.sub("k_proj"), x);
  Tensor v = linear(s.sub("v_proj"), x);
  return linear(s.sub("out_proj"), multi_head_attention(q, k, v, heads, /*causal=*/true), residual);
}

// CLIPMLP: fc1, quick-GELU x*sigmoid(1.702x) (exact GELU for configs that ask for it), fc2
// (+ `residual`).
Tensor clip_mlp(const Scope& s, Tensor x, bool quick_gelu, Tensor residual) {
  Tensor h = linear(s.sub("fc1"), x);
  h = ops::activation(h, quick_gelu ? ops::Act::QuickGELU : ops::Act::GELU);
  return linear(s.sub("fc2"), h, residual);
}

// CLIPEncoderLayer, pre-LayerNorm: x += attn(ln1(x)); x += mlp(ln2(x)).
Tensor clip_encoder_layer(const Scope& s, Tensor x, const ClipConfig& cfg) {
  x = clip_self_attention(s.sub("self_attn"), layer_norm(s.sub("layer_norm1"), x, cfg.ln_eps), cfg.heads, x);
  return clip_mlp(s.sub("mlp"), layer_norm(s.sub("layer_norm2"), x, cfg.ln_eps), cfg.quick_gelu, x);
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
  const Scope root = Scope::root(g, weights_, cfg_.prefix);
  const int64_t L = cfg_.max_length, D = cfg_.width;

  net->ids = g.input({batch_, L}, DType::I32, "token_ids");
  const Scope emb = root.sub("embeddings");
  Tensor x = ops::token_embedding(net->ids, emb.w("token_embedding.weight", {cfg_.vocab_size, D}),
                                  emb.w("position_embedding.weight", {L, D}));
  net->embeddings = x;
  g.keep(x);

  // clip_skip k: the final LayerNorm reads the output of layer (used_layers - k); later layers
  // (and the ones the model skips: SD 2.x's last OpenCLIP block) are not needed and not built.
  const int last = cfg_.used_layers() - clip_skip;
  const Scope layers = root.sub("encoder.layers");
  for (int i = 0; i <= last; ++i) {
    x = clip_encoder_layer(layers.sub(i), x, cfg_);
    net->layers.push_back(x);
    g.keep(x);
  }
  net->hidden = layer_norm(root.sub("final_layer_norm"), x, cfg_.ln_eps);
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
