#include "runtime/diffusion/conditioner.h"

#include <chrono>

#include "runtime/diffusion/finite_check.h"
#include "runtime/diffusion/pipeline_nets.h"
#include "runtime/error.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/text/lora_tags.h"
#include "runtime/text/tokenizer.h"

namespace vksd {

std::vector<float> encode_weighted(nn::TextEncoder& te, const WeightedPrompt& wp, int clip_skip) {
  const size_t L = WeightedPrompt::kChunkLength, D = (size_t)te.config().width;
  std::vector<float> out;
  out.reserve(wp.chunk_count * L * D);
  for (int c = 0; c < wp.chunk_count; ++c) {
    std::vector<int32_t> ids(wp.chunk_ids(c), wp.chunk_ids(c) + L);
    auto z = te.encode(ids, clip_skip);
    if (z.size() != L * D) fail("text encoder returned " + std::to_string(z.size()) + " values, expected 77 x width");
    // A1111 "Original" emphasis: scale each token's hidden state by its weight, then restore the
    // mean of the whole chunk so the overall magnitude the UNet sees is unchanged.
    const float* w = wp.chunk_weights(c);
    bool emphasis = false;
    for (size_t i = 0; i < L; ++i) emphasis = emphasis || w[i] != 1.0f;
    if (emphasis) {
      double before = 0, after = 0;
      for (float v : z) before += v;
      for (size_t i = 0; i < L; ++i)
        for (size_t d = 0; d < D; ++d) z[i * D + d] *= w[i];
      for (float v : z) after += v;
      const float k = (float)((before / z.size()) / (after / z.size()));
      for (float& v : z) v *= k;
    }
    out.insert(out.end(), z.begin(), z.end());
  }
  return out;
}

std::vector<float> inpaint_concat(const std::vector<float>& mask, int height, int width, int f,
                                  const std::vector<float>& masked_latent) {
  const int lh = height / f, lw = width / f;
  std::vector<float> r((size_t)lh * lw);
  for (int y = 0; y < lh; ++y)
    for (int x = 0; x < lw; ++x) r[(size_t)y * lw + x] = mask[(size_t)(y * f) * width + x * f] >= 0.5f ? 1.f : 0.f;
  r.insert(r.end(), masked_latent.begin(), masked_latent.end());
  return r;
}

void mask_out(std::vector<float>& image, const std::vector<float>& mask) {
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] >= 0.5f)
      for (int c = 0; c < 3; ++c) image[(size_t)c * mask.size() + i] = 0.f;
}

// ---- the text conditioner of SdPipeline -------------------------------------------------------

std::vector<float> SdPipeline::encode_prompt(const std::string& prompt, int clip_skip, int pad_chunks) {
  if (!nets_->text) {
    if (!nets_->clip_w) nets_->clip_w = load_merged(ctx_, *ckpt_, kClipPrefix, dtype_, loras_, nets_->clip_lora);
    nets_->text = std::make_unique<nn::TextEncoder>(ctx_, *nets_->clip_w, config().clip, 1);
  }
  return encode_weighted(*nets_->text, tokenize(prompt, pad_chunks), clip_skip);
}

GuidedConditioning SdPipeline::condition(const GenerateParams& p, Observer* obs, double& text_ms) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const std::string prompt = extract_lora_tags(p.prompt).text;
  GuidedConditioning c;
  c.guided = p.cfg_scale != 1.0;
  stage(obs, "encode prompt");
  // Cond and uncond padded to the same number of 77-token chunks.
  const int cc = tokenize_weighted(*tok_, prompt).chunk_count;
  const int uc = c.guided ? tokenize_weighted(*tok_, p.negative_prompt).chunk_count : 0;
  const int chunks = std::max(cc, uc);
  // Longer than one 75-token window: say so (nothing is cut; the chunks are concatenated).
  if (chunks > 1) {
    const std::string note = "prompt longer than 75 tokens: encoded as " + std::to_string(chunks) +
                             " chunks of 75 tokens, concatenated (as AUTOMATIC1111 does)";
    stage(obs, note.c_str());
  }
  const int width = config().clip.width;
  auto text = [&](const std::string& s, const char* what) {
    Conditioning r;
    r.context = encode_prompt(s, p.clip_skip, chunks);
    require_finite(r.context, what);
    r.width = width;
    r.tokens = (int)(r.context.size() / (size_t)width);
    return r;
  };
  c.cond = text(prompt, "the text embeddings of the prompt");
  if (c.guided) c.uncond = text(p.negative_prompt, "the text embeddings of the negative prompt");
  if (opts_.lowvram) nets_->release_text();
  text_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  c.prompt = tokenize(prompt, c.cond.tokens / WeightedPrompt::kChunkLength);
  if (c.guided) c.negative = tokenize(p.negative_prompt, c.prompt.chunk_count);
  if (obs) {
    TextEvent te;
    te.prompt = &c.prompt;
    te.negative = c.guided ? &c.negative : nullptr;
    te.cond = &c.cond.context;
    te.uncond = c.guided ? &c.uncond.context : nullptr;
    te.chunks = c.prompt.chunk_count;
    te.width = width;
    te.clip_skip = p.clip_skip;
    te.text_ms = text_ms;
    obs->on_text(te);
  }
  return c;
}

}  // namespace vksd
