// SDXL's text conditioning (sgm GeneralConditioner, the two "txt" embedders of sd_xl_base.yaml):
//   CLIP ViT-L/14 (FrozenCLIPEmbedder, layer "hidden", layer_idx -2):
//       hidden_states[L-1] = output of the penultimate layer, NO final LayerNorm     [B, 77, 768]
//   OpenCLIP ViT-bigG/14 (FrozenOpenCLIPEmbedder2, layer "penultimate", legacy False):
//       output of the penultimate block, NO ln_final                                  [B, 77, 1280]
//       pooled = ln_final(output of the last block)[first EOS] @ text_projection     [B, 1280]
//   context ("crossattn") = cat(ViT-L, bigG) on the channel axis                     [B, 77, 2048]
// The pooled vector starts the UNet's vector input y (diffusion/sdxl_size_conditioning.h adds
// the size embeddings). Each encoder is an nn::TextEncoder over its own WeightStore
// (model/sdxl_text.h); the pooled projection (one row per prompt) is done on the host in f32.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/model/sdxl_text.h"
#include "runtime/nn/text_encoder.h"

namespace vksd::nn {

struct SdxlTextOutput {
  std::vector<float> context;  // [batch, max_length, clip_l.width + clip_g.width]
  std::vector<float> pooled;   // [batch, projection_dim]
};

class SdxlTextConditioner {
 public:
  // `clip_l` / `clip_g`: the encoders' weights (SdxlTextWeights::upload(ctx, 0 / 1, ...));
  // `projection`: SdxlTextWeights::text_projection(). The stores must outlive this object.
  SdxlTextConditioner(Context& ctx, const WeightStore& clip_l, const WeightStore& clip_g, const SdxlTextConfig& cfg,
                      std::vector<float> projection, int batch, NetOptions opts = {});
  ~SdxlTextConditioner();

  // ids_l / ids_g: batch x max_length token ids for each encoder (CLIP-L pads with EOS, bigG with
  // 0: the same prompt tokenized twice). The pooled vector reads the first EOS of ids_g.
  SdxlTextOutput encode(const std::vector<int32_t>& ids_l, const std::vector<int32_t>& ids_g);

  // The encoders, for layer-by-layer inspection after encode().
  TextEncoder& clip_l() { return *clip_l_; }
  TextEncoder& clip_g() { return *clip_g_; }
  const SdxlTextConfig& config() const { return cfg_; }
  int batch() const { return batch_; }

 private:
  SdxlTextConfig cfg_;
  std::vector<float> projection_;  // [clip_g.width, projection_dim]
  int batch_;
  std::unique_ptr<TextEncoder> clip_l_, clip_g_;
};

// The unconditional branch's text part when the negative prompt is empty: all zeros, context
// and pooled, as SDXL's reference pipelines build it (sgm: force_uc_zero_embeddings=["txt"];
// diffusers: force_zeros_for_empty_prompt). A non-empty negative prompt is encoded like a
// prompt (diffusers; sgm's sampling scripts zero the text even then). The size embeddings of y
// are kept either way.
SdxlTextOutput zero_text_conditioning(const SdxlTextConfig& cfg, int batch);

// pooled = last_ln[b, eos_b] @ projection for each prompt b, where eos_b is the first position
// holding `eos_id` in ids (open_clip's argmax over ids, the EOS being the largest id).
// last_ln: [batch, length, width], projection: [width, proj] -> [batch, proj]. Error when a row
// has no EOS.
std::vector<float> pooled_text_embedding(const std::vector<float>& last_ln, const std::vector<int32_t>& ids, int batch,
                                         int length, int width, const std::vector<float>& projection, int proj,
                                         int32_t eos_id);

// cat(a, b) along the last axis: a [rows, wa], b [rows, wb] -> [rows, wa + wb].
std::vector<float> concat_channels(const std::vector<float>& a, int wa, const std::vector<float>& b, int wb);

}  // namespace vksd::nn
