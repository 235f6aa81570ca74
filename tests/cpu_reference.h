// A CPU reference of Stable Diffusion 1.x's three networks in double precision, written
// straight from the PyTorch definitions (LDM openaimodel.UNetModel / model.Encoder, Decoder,
// Hugging Face CLIPTextModel) with plain loops. It shares no code with runtime/nn: the tests use
// it as independent truth for the full-size networks, where no reference vectors exist.
//
// Weights come from a callback by their original checkpoint name, so a test can generate them
// on demand (the full-size UNet does not fit in host memory twice).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/model/model_config.h"

namespace vksd::cpuref {

using Vec = std::vector<double>;
// name -> the weight's values (row-major, as the device holds them).
using WeightFn = std::function<std::vector<float>(const std::string& name)>;

// An NCHW image batch.
struct Image {
  int n = 0, c = 0, h = 0, w = 0;
  Vec d;
  Image() = default;
  Image(int n_, int c_, int h_, int w_) : n(n_), c(c_), h(h_), w(w_), d((size_t)n_ * c_ * h_ * w_, 0.0) {}
  double& at(int b, int ch, int y, int x) { return d[(((size_t)b * c + ch) * h + y) * w + x]; }
  const double& at(int b, int ch, int y, int x) const { return d[(((size_t)b * c + ch) * h + y) * w + x]; }
};

// A batch of token sequences [n, len, dim].
struct Seq {
  int n = 0, len = 0, dim = 0;
  Vec d;
  Seq() = default;
  Seq(int n_, int l_, int d_) : n(n_), len(l_), dim(d_), d((size_t)n_ * l_ * d_, 0.0) {}
};

// CLIP text transformer: ids [batch * max_length] -> last_hidden_state; `layers` (optional)
// receives every encoder layer's output before the final LayerNorm.
Seq clip_text(const WeightFn& w, const ClipConfig& cfg, const std::vector<int32_t>& ids, int batch,
              std::vector<Seq>* layers = nullptr);

// UNet: x [B, in, h, w], t [B], context [B, L, context_dim] -> [B, out, h, w]; y [B,
// adm_in_channels] is the vector input of a UNet with label_emb (SDXL), ignored otherwise.
// Transformer depth per level and in the middle as UNetConfig::depth_at / middle_depth say.
// `blocks` (optional) receives "time_embed", "label_emb" (with y), "input_blocks.N",
// "middle_block", "output_blocks.N".
Image unet(const WeightFn& w, const UNetConfig& cfg, const Image& x, const std::vector<double>& t, const Seq& context,
           std::map<std::string, Image>* blocks = nullptr, const Vec& y = {});

// VAE: z (= latent / scale_factor) -> image; image -> moments [B, 2 embed_dim, h, w] (after
// quant_conv, logvar not clamped).
Image vae_decode(const WeightFn& w, const VaeConfig& cfg, const Image& z);
Image vae_encode_moments(const WeightFn& w, const VaeConfig& cfg, const Image& image);

}  // namespace vksd::cpuref
