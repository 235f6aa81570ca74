// Everything SDXL's UNet is told besides the latent and the timestep, for both branches of
// classifier-free guidance: the cross-attention context (both text encoders, concatenated) and
// the vector y (pooled text + size embeddings). What the staged pipeline's conditioner calls
// for an SDXL model.
//
// The unconditional branch follows the reference pipelines: an empty negative prompt gives
// zeroed text embeddings (context and pooled; sgm force_uc_zero_embeddings=["txt"], diffusers
// force_zeros_for_empty_prompt), a non-empty one is encoded like the prompt (diffusers); the
// size embeddings are the same in both branches.
//
// Prompts are plain text here, one 77-token window each (longer prompts are truncated and say
// so); emphasis syntax and chunking are the conditioner stage's.
#pragma once
#include <string>
#include <vector>

#include "runtime/diffusion/sdxl_size_conditioning.h"

namespace vksd {

class Tokenizer;
namespace nn {
class SdxlTextConditioner;
}

struct SdxlBranch {
  std::vector<float> context;  // [max_length, context_dim]
  std::vector<float> y;        // [adm_in_channels] = pooled + 3 x 512
  bool truncated = false;      // the prompt had more tokens than fit
};

struct SdxlGuidedConditioning {
  SdxlBranch cond, uncond;
};

// The tokens of `text` for each encoder: CLIP-L pads with its pad token (EOS), bigG with 0.
void sdxl_tokens(const Tokenizer& tok, const nn::SdxlTextConditioner& te, const std::string& text,
                 std::vector<int32_t>& ids_l, std::vector<int32_t>& ids_g, bool* truncated = nullptr);

// `te` must have batch 1.
SdxlBranch sdxl_branch(nn::SdxlTextConditioner& te, const Tokenizer& tok, const std::string& text,
                       const SdxlSizeConditioning& size);
SdxlGuidedConditioning sdxl_condition(nn::SdxlTextConditioner& te, const Tokenizer& tok, const std::string& prompt,
                                      const std::string& negative, const SdxlSizeConditioning& size);

}  // namespace vksd
