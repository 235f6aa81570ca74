// The latent-diffusion UNet (LDM openaimodel.UNetModel with SpatialTransformer cross-attention),
// weights under model.diffusion_model.*:
//   time_embed: sinusoidal(t, model_channels) -> Linear -> SiLU -> Linear
//               (+ label_emb: Linear -> SiLU -> Linear on the vector input y, when the model
//               has one: the reference's forward(x, timesteps, context, y), SDXL)
//   input_blocks:  conv_in, then per level num_res_blocks x [ResBlock (+ SpatialTransformer)],
//                  and a Downsample between levels; every block's output is saved as a skip
//   middle_block:  ResBlock, SpatialTransformer, ResBlock
//   output_blocks: per level (deepest first) num_res_blocks + 1 x [concat(skip) -> ResBlock
//                  (+ SpatialTransformer)], and an Upsample between levels
//   out:           GroupNorm + SiLU, conv3x3 -> eps (or v)
// The graph is built and compiled once for a fixed batch and latent size and replayed per step.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/model/model_config.h"
#include "runtime/model/network_prefixes.h"
#include "runtime/nn/blocks.h"

namespace vksd::nn {

class UNet {
 public:

  UNet(Context& ctx, const WeightStore& weights, const UNetConfig& cfg, int batch, int latent_h, int latent_w,
       int context_len = 77, NetOptions opts = {});
  ~UNet();

  // Cross-attention context [batch, context_len, context_dim]; uploaded once per prompt.
  void set_context(const std::vector<float>& ctx);
  // Vector input y [batch, adm_in_channels] (UNetConfig::adm_in_channels > 0 only); uploaded once
  // per prompt like the context.
  void set_y(const std::vector<float>& y);
  bool has_y() const { return y_.valid(); }
  // x [batch, in_channels, h, w], t [batch] (float, may be fractional, one per sample)
  // -> model output [batch, out_channels, h, w] (eps or v, as the checkpoint was trained).
  std::vector<float> forward(const std::vector<float>& x, const std::vector<float>& t);
  // After forward(), with opts.keep_blocks: "time_embed" (the MLP output), "t_emb" (sinusoidal),
  // "label_emb" (with a y input),
  // "input_blocks.N", "middle_block", "output_blocks.N".
  std::vector<float> block_output(const std::string& name);
  std::vector<std::string> block_names() const;
  // With opts.attention_maps: the cross-attention layers in graph order ("input 1", "middle",
  // "output 4": the block of input_blocks / output_blocks holding the transformer; a " #d"
  // suffix when transformer_depth > 1), with `level` (0 = full latent resolution; the middle
  // block is at the deepest level) and the layer's grid. With keep_blocks too, the input of each
  // layer's to_q (norm2's output) is a block output named "<transformer prefix>.norm2", e.g.
  // "input_blocks.1.1.transformer_blocks.0.norm2" (tests reproduce the probabilities from it).
  struct AttentionLayer {
    std::string block;
    std::string scope;  // its transformer block's weights: "input_blocks.1.1.transformer_blocks.0"
    int level = 0, height = 0, width = 0;
    int tokens = 0;  // context length
  };
  const std::vector<AttentionLayer>& attention_layers() const { return attention_layers_; }
  // After forward(): layer i's probabilities for the last batch entry, [tokens][height * width],
  // mean over heads of softmax(q kᵀ / sqrt(d_head)) over the tokens.
  std::vector<float> attention_probs(size_t i);

  VkDeviceSize peak_bytes() const;
  const Graph& graph() const { return *graph_; }
  int batch() const { return batch_; }
  int latent_h() const { return h_; }
  int latent_w() const { return w_; }

 private:
  void build();

  Context& ctx_;
  const WeightStore& weights_;
  UNetConfig cfg_;
  int batch_, h_, w_, context_len_;
  NetOptions opts_;
  std::unique_ptr<Graph> graph_;
  Tensor x_, t_, context_, y_, out_;
  bool context_set_ = false, y_set_ = false;
  std::map<std::string, Tensor> blocks_;
  std::vector<AttentionLayer> attention_layers_;
  std::vector<Tensor> attention_probs_;
};

}  // namespace vksd::nn
