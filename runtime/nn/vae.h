// The AutoencoderKL of Stable Diffusion 1.x (first_stage_model.*), LDM's Encoder and Decoder:
//   ResnetBlock: norm1+SiLU, conv1, norm2+SiLU, conv2, + x (nin_shortcut 1x1 when channels
//                change); GroupNorm(32) eps 1e-6, no time embedding
//   AttnBlock:   single head over all pixels, 1x1-conv q, k, v, proj_out, scale 1/sqrt(C)
//   Encoder:     conv_in, per level num_res_blocks ResnetBlocks and a stride-2 downsample with
//                asymmetric padding (0,1,0,1), mid (block_1, attn_1, block_2), norm_out+SiLU,
//                conv_out -> 2 z_channels; quant_conv -> (mean, logvar)
//   Decoder:     post_quant_conv, conv_in, mid, per level (deepest first) num_res_blocks + 1
//                ResnetBlocks and a nearest-x2 upsample + conv, norm_out+SiLU, conv_out
// Each graph is built and compiled once for a fixed batch and size and replayed.
#pragma once
#include <memory>
#include <vector>

#include "runtime/model/model_config.h"
#include "runtime/nn/blocks.h"

namespace vksd::nn {

class VaeDecoder {
 public:
  VaeDecoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch, int latent_h, int latent_w,
             NetOptions opts = {});
  ~VaeDecoder();
  // z = latent / scale_factor, [batch, embed_dim, h, w] -> image [batch, out_channels, H, W],
  // raw decoder output (about [-1, 1], not clamped).
  std::vector<float> decode(const std::vector<float>& z);
  VkDeviceSize peak_bytes() const;
  const Graph& graph() const { return *graph_; }

 private:
  Context& ctx_;
  VaeConfig cfg_;
  int batch_, h_, w_;
  std::unique_ptr<Graph> graph_;
  Tensor z_, image_;
};

class VaeEncoder {
 public:
  VaeEncoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch, int image_h, int image_w,
             NetOptions opts = {});
  ~VaeEncoder();
  // The diagonal Gaussian posterior, each [batch, embed_dim, h, w]; logvar clamped to [-30, 20].
  struct Posterior {
    std::vector<float> mean, logvar;
  };
  // image [batch, in_channels, H, W] in [-1, 1]; H and W multiples of the downsample factor.
  Posterior encode(const std::vector<float>& image);
  VkDeviceSize peak_bytes() const;
  const Graph& graph() const { return *graph_; }

 private:
  Context& ctx_;
  VaeConfig cfg_;
  int batch_, h_, w_;
  std::unique_ptr<Graph> graph_;
  Tensor image_, moments_;
};

// ---- the VAE in parts, for tiled runs (nn/vae_tiled.h) ----------------------------------------

// Where the GroupNorms of a part get their statistics.
enum class VaeNorms {
  Own,         // from the tensor itself: the network as trained
  Selectable,  // per run either the tensor's own (the default) or statistics given by the host
               // (merged over all tiles); the own statistics can be read after every run
};

// The VAE split where tiling changes resolution class:
//   DecoderHead  z [B, embed_dim, h, w] -> post_quant_conv, conv_in, mid (attention over the
//                whole latent) -> [B, C, h, w]
//   DecoderTail  -> up blocks, norm_out+SiLU, conv_out -> image [B, out_channels, H, W]
//   EncoderHead  image [B, in_channels, H, W] -> conv_in, down blocks -> [B, C, h, w]
//   EncoderTail  -> mid, norm_out+SiLU, conv_out, quant_conv -> moments [B, 2 embed_dim, h, w]
// Head then tail is exactly VaeDecoder / VaeEncoder (same ops in the same order).
enum class VaePart { DecoderHead, DecoderTail, EncoderHead, EncoderTail };

class VaePartNet {
 public:
  // in_h, in_w: the part's input size (latent pixels for DecoderHead/DecoderTail/EncoderTail,
  // image pixels for EncoderHead).
  VaePartNet(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, VaePart part, int batch, int in_h,
             int in_w, VaeNorms norms = VaeNorms::Own, NetOptions opts = {});
  ~VaePartNet();
  const Shape& input_shape() const;
  const Shape& output_shape() const;
  // VaeNorms::Selectable: the GroupNorms in the graph (in order); each one's statistics are
  // batch x 32 x (mean, 1/sqrt(var + eps)).
  int norm_count() const { return (int)own_stats_.size(); }
  // Normalise with the statistics set by set_norm_stats (true) or the tensors' own (false).
  void use_given_norm_stats(bool given);
  void set_norm_stats(int k, const std::vector<float>& stats);
  std::vector<float> norm_stats(int k);  // the own statistics of the last run
  std::vector<float> run(const std::vector<float>& x);
  VkDeviceSize peak_bytes() const;

 private:
  std::unique_ptr<Graph> graph_;
  Tensor in_, out_;
  std::vector<Tensor> given_stats_, own_stats_;
  Tensor use_own_, use_given_;  // per-run 0/1 weights of the two statistics
};

}  // namespace vksd::nn
