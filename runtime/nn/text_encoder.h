// The CLIP text transformer that conditions Stable Diffusion (cond_stage_model.transformer.
// text_model.*, Hugging Face CLIPTextModel names): OpenAI CLIP ViT-L/14 for SD 1.x, OpenCLIP
// ViT-H/14 for SD 2.x (the same transformer with exact GELU; its open_clip names are mapped at
// load, runtime/model/openclip_keys.h):
//   token_embedding[ids] + position_embedding
//   layers x { x += self_attn(layer_norm1(x)) with a causal mask;
//              x += fc2(quick_gelu or gelu(fc1(layer_norm2(x)))) }
//   final_layer_norm on the last used layer (ClipConfig::skip_last_layers: SD 2.x's penultimate)
// The graph is built and compiled once per (batch, clip_skip) and replayed for every prompt.
// Activations take the storage type of the token table (ops::token_embedding's rule), so
// NetOptions::activations has no effect here until a cast op exists.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "runtime/model/model_config.h"
#include "runtime/model/network_prefixes.h"
#include "runtime/nn/blocks.h"

namespace vksd::nn {

class TextEncoder {
 public:

  TextEncoder(Context& ctx, const WeightStore& weights, const ClipConfig& cfg, int batch, NetOptions opts = {});
  ~TextEncoder();

  // ids: batch * max_length token ids -> [batch, max_length, width]: final_layer_norm applied to
  // the output of layer (used_layers - clip_skip) counting from 0 (clip_skip 1 = the last layer
  // the model uses).
  std::vector<float> encode(const std::vector<int32_t>& ids, int clip_skip = 1);
  // Output of encoder layer `layer` (before the final LayerNorm) from the last encode(); only
  // layers that encode() computed (0 .. layers - clip_skip) are available.
  std::vector<float> layer_output(int layer);
  // Output of the embeddings (token + position) from the last encode().
  std::vector<float> embeddings();

  VkDeviceSize peak_bytes() const;  // activation arena of the last-used graph
  double flops() const;             // floating-point ops of one encode() (last-used graph)
  int batch() const { return batch_; }
  const ClipConfig& config() const { return cfg_; }

 private:
  struct Net;
  Net& net_for(int clip_skip);

  Context& ctx_;
  const WeightStore& weights_;
  ClipConfig cfg_;
  int batch_;
  NetOptions opts_;
  std::map<int, std::unique_ptr<Net>> nets_;  // by clip_skip
  Net* last_ = nullptr;
};

}  // namespace vksd::nn
