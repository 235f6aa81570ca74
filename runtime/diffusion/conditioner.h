// The conditioner stage: everything the UNet is told besides the noisy latent and the timestep,
// as one value per branch of classifier-free guidance. Text goes through every text encoder of
// the model (ModelConfig::text_encoders(): SD 1.x / 2.x one, SDXL two) as the same 77-token
// chunks with A1111 emphasis, each tokenized with its own pad token and giving the layer its
// ClipConfig names; the contexts are concatenated on the feature axis (SdPipeline::condition,
// encode_text). Encoders with a pooled output (SDXL's bigG) start the UNet's vector y, followed
// by the size embeddings where the model takes them (ModelConfig::size_embed_dim). An
// inpainting UNet also gets the mask and the masked image's latent as extra input channels
// (inpaint_concat). A model family's conditioning is data here: which fields are filled, not a
// code path.
#pragma once
#include <vector>

#include "runtime/text/prompt.h"

namespace vksd {

namespace nn {
class TextEncoder;
}

struct Conditioning {
  std::vector<float> context;  // [tokens, width]: the cross-attention context
  int tokens = 0, width = 0;
  // The UNet's vector input y [UNetConfig::adm_in_channels] (SDXL: pooled text + size
  // embeddings); empty for UNets without one.
  std::vector<float> y;
  // Channels concatenated to the latent [c, h, w] (9-channel inpainting UNets: the mask, then the
  // masked image's latent); empty = none.
  std::vector<float> concat;
};

// The prompt's conditioning and, with guidance, the negative prompt's; both contexts have the
// same number of tokens (the shorter prompt is padded to the longer one's chunks).
struct GuidedConditioning {
  Conditioning cond, uncond;
  bool guided = false;                // cfg_scale != 1: the UNet runs the batch [uncond, cond]
  WeightedPrompt prompt, negative;    // the tokens, as the observers' TextEvent shows them
};

// One prompt's tokens through one text encoder, chunk by chunk, concatenated: [chunks * 77,
// width], the layer its config names (ClipConfig::context_layer(clip_skip), final_layer_norm if
// final_norm), A1111 "Original" emphasis applied. For an encoder with a pooled output,
// `pooled` (if given) gets the first chunk's (pooled_text_embedding with `projection`).
std::vector<float> encode_weighted(nn::TextEncoder& te, const WeightedPrompt& wp, int clip_skip,
                                   const std::vector<float>& projection = {}, std::vector<float>* pooled = nullptr);

// pooled = last_ln[b, eos_b] @ projection for each prompt b, where eos_b is the first position
// holding `eos_id` in ids (open_clip's argmax over ids, the end token being the largest id).
// last_ln: [batch, length, width], projection: [width, proj] -> [batch, proj], in double.
std::vector<float> pooled_text_embedding(const std::vector<float>& last_ln, const std::vector<int32_t>& ids, int batch,
                                         int length, int width, const std::vector<float>& projection, int proj,
                                         int32_t eos_id);

// cat(a, b) along the last axis: a [rows, wa], b [rows, wb] -> [rows, wa + wb].
std::vector<float> concat_channels(const std::vector<float>& a, int wa, const std::vector<float>& b, int wb);

// A mask image as the inpainting UNet was trained on it: `mask` [H, W] (>= 0.5 = repaint),
// nearest-downsampled by f to a binary [1, H/f, W/f] plane, followed by the latent of the image
// with the repaint region set to 0 (`masked_latent`, [C, H/f, W/f]).
std::vector<float> inpaint_concat(const std::vector<float>& mask, int height, int width, int f,
                                  const std::vector<float>& masked_latent);
// `image` [3, H, W] with the repaint region of `mask` [H, W] set to 0 (grey): what the
// inpainting UNet's masked-image latent is encoded from.
void mask_out(std::vector<float>& image, const std::vector<float>& mask);

}  // namespace vksd
