#include "runtime/diffusion/sdxl_conditioning.h"

#include "runtime/error.h"
#include "runtime/nn/sdxl_text_conditioner.h"
#include "runtime/text/tokenizer.h"

namespace vksd {

void sdxl_tokens(const Tokenizer& tok, const nn::SdxlTextConditioner& te, const std::string& text,
                 std::vector<int32_t>& ids_l, std::vector<int32_t>& ids_g, bool* truncated) {
  const SdxlTextConfig& c = te.config();
  const SdTokens l = tok.encode_for_sd(text, c.clip_l.max_length, c.clip_l.pad_token);
  const SdTokens g = tok.encode_for_sd(text, c.clip_g.max_length, c.clip_g.pad_token);
  ids_l = l.ids;
  ids_g = g.ids;
  if (truncated) *truncated = l.truncated || g.truncated;
}

SdxlBranch sdxl_branch(nn::SdxlTextConditioner& te, const Tokenizer& tok, const std::string& text,
                       const SdxlSizeConditioning& size) {
  if (te.batch() != 1) fail("sdxl_branch: the text conditioner must have batch 1, has " + std::to_string(te.batch()));
  std::vector<int32_t> ids_l, ids_g;
  SdxlBranch b;
  sdxl_tokens(tok, te, text, ids_l, ids_g, &b.truncated);
  nn::SdxlTextOutput out = te.encode(ids_l, ids_g);
  b.context = std::move(out.context);
  b.y = sdxl_vector_y(out.pooled, 1, te.config().projection_dim, size);
  return b;
}

SdxlGuidedConditioning sdxl_condition(nn::SdxlTextConditioner& te, const Tokenizer& tok, const std::string& prompt,
                                      const std::string& negative, const SdxlSizeConditioning& size) {
  SdxlGuidedConditioning g;
  g.cond = sdxl_branch(te, tok, prompt, size);
  if (negative.empty()) {
    const nn::SdxlTextOutput zero = nn::zero_text_conditioning(te.config(), 1);
    g.uncond.context = zero.context;
    g.uncond.y = sdxl_vector_y(zero.pooled, 1, te.config().projection_dim, size);
  } else {
    g.uncond = sdxl_branch(te, tok, negative, size);
  }
  return g;
}

}  // namespace vksd
