// The conditioner stage: everything the UNet is told besides the noisy latent and the timestep,
// as one value per branch of classifier-free guidance. Text goes through the text encoder as
// 77-token chunks with A1111 emphasis (SdPipeline::condition, encode_prompt); an inpainting UNet
// also gets the mask and the masked image's latent as extra input channels (inpaint_concat).
// A model family's conditioning is data here: which fields are filled, not a code path.
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

// One prompt's tokens through the text encoder (clip_skip as TextEncoder::encode), chunk by
// chunk, concatenated: [chunks * 77, width], A1111 "Original" emphasis applied.
std::vector<float> encode_weighted(nn::TextEncoder& te, const WeightedPrompt& wp, int clip_skip);

// A mask image as the inpainting UNet was trained on it: `mask` [H, W] (>= 0.5 = repaint),
// nearest-downsampled by f to a binary [1, H/f, W/f] plane, followed by the latent of the image
// with the repaint region set to 0 (`masked_latent`, [C, H/f, W/f]).
std::vector<float> inpaint_concat(const std::vector<float>& mask, int height, int width, int f,
                                  const std::vector<float>& masked_latent);
// `image` [3, H, W] with the repaint region of `mask` [H, W] set to 0 (grey): what the
// inpainting UNet's masked-image latent is encoded from.
void mask_out(std::vector<float>& image, const std::vector<float>& mask);

}  // namespace vksd
