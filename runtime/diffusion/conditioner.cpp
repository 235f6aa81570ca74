#include "runtime/diffusion/conditioner.h"

#include <chrono>

#include "runtime/diffusion/finite_check.h"
#include "runtime/diffusion/pipeline_nets.h"
#include "runtime/diffusion/sdxl_size_conditioning.h"
#include "runtime/error.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/text/lora_tags.h"
#include "runtime/text/tokenizer.h"

namespace vksd {

std::vector<float> encode_weighted(nn::TextEncoder& te, const WeightedPrompt& wp, int clip_skip,
                                   const std::vector<float>& projection, std::vector<float>* pooled) {
  const ClipConfig& cfg = te.config();
  const size_t L = WeightedPrompt::kChunkLength, D = (size_t)cfg.width;
  const int layer = cfg.context_layer(clip_skip);
  if (layer < 0) fail("clip skip " + std::to_string(clip_skip) + " leaves no layer of the text encoder");
  std::vector<float> out;
  out.reserve(wp.chunk_count * L * D);
  for (int c = 0; c < wp.chunk_count; ++c) {
    std::vector<int32_t> ids(wp.chunk_ids(c), wp.chunk_ids(c) + L);
    std::vector<float> z;
    if (cfg.pooled_dim > 0) {
      // The pooled vector needs the last layer through final_layer_norm; the context is a
      // layer below it (SDXL's bigG: the penultimate, raw).
      const std::vector<float> last = te.encode(ids, 1);
      if (c == 0 && pooled)
        *pooled = pooled_text_embedding(last, ids, 1, (int)L, cfg.width, projection, cfg.pooled_dim, cfg.eos_token);
      if (cfg.final_norm && layer != cfg.used_layers() - 1)
        fail("text encoder: a pooled encoder's context through final_layer_norm must be its last layer");
      z = cfg.final_norm ? last : te.layer_output(layer);
    } else {
      z = te.encode(ids, clip_skip + cfg.context_skip);
      if (!cfg.final_norm) z = te.layer_output(layer);
    }
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

std::vector<float> pooled_text_embedding(const std::vector<float>& last_ln, const std::vector<int32_t>& ids, int batch,
                                         int length, int width, const std::vector<float>& projection, int proj,
                                         int32_t eos_id) {
  if (last_ln.size() != (size_t)batch * length * width || ids.size() != (size_t)batch * length ||
      projection.size() != (size_t)width * proj)
    fail("pooled_text_embedding: sizes do not match batch " + std::to_string(batch) + " x " + std::to_string(length) +
         " x " + std::to_string(width) + " -> " + std::to_string(proj));
  std::vector<float> out((size_t)batch * proj);
  for (int b = 0; b < batch; ++b) {
    int eos = -1;
    for (int t = 0; t < length && eos < 0; ++t)
      if (ids[(size_t)b * length + t] == eos_id) eos = t;
    if (eos < 0) fail("pooled_text_embedding: prompt " + std::to_string(b) + " has no end-of-text token");
    const float* x = &last_ln[((size_t)b * length + eos) * width];
    for (int j = 0; j < proj; ++j) {
      double acc = 0;
      for (int i = 0; i < width; ++i) acc += (double)x[i] * projection[(size_t)i * proj + j];
      out[(size_t)b * proj + j] = (float)acc;
    }
  }
  return out;
}

std::vector<float> concat_channels(const std::vector<float>& a, int wa, const std::vector<float>& b, int wb) {
  if (wa <= 0 || wb <= 0 || a.size() % wa || b.size() % wb || a.size() / wa != b.size() / wb)
    fail("concat_channels: [" + std::to_string(a.size()) + " / " + std::to_string(wa) + "] and [" +
         std::to_string(b.size()) + " / " + std::to_string(wb) + "] do not have the same rows");
  const size_t rows = a.size() / wa;
  std::vector<float> out(rows * (wa + wb));
  for (size_t r = 0; r < rows; ++r) {
    std::copy(a.begin() + r * wa, a.begin() + (r + 1) * wa, out.begin() + r * (wa + wb));
    std::copy(b.begin() + r * wb, b.begin() + (r + 1) * wb, out.begin() + r * (wa + wb) + wa);
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

SdPipeline::TextOutput SdPipeline::encode_text(const std::string& prompt, int clip_skip, int pad_chunks) {
  const ModelConfig& cfg = config();
  auto& N = *nets_;
  N.text.resize(cfg.text_encoder_count());
  N.text_w.resize(cfg.text_encoder_count());
  N.text_lora.resize(cfg.text_encoder_count());
  N.projection.resize(cfg.text_encoder_count());
  TextOutput r;
  int width = 0;
  for (size_t i = 0; i < cfg.text_encoder_count(); ++i) {
    const ClipConfig& c = cfg.text_encoder(i);
    if (!N.text[i]) {
      if (!N.text_w[i]) N.text_w[i] = load_merged(ctx_, *ckpt_, c.prefix, dtype_, loras_, N.text_lora[i]);
      if (c.pooled_dim > 0 && N.projection[i].empty()) N.projection[i] = ckpt_->read_f32(c.prefix + "text_projection");
      nn::NetOptions to;
      to.scratch = scratch_;
      N.text[i] = std::make_unique<nn::TextEncoder>(ctx_, *N.text_w[i], c, 1, to);
    }
    std::vector<float> pooled;
    std::vector<float> z = encode_weighted(*N.text[i], tokenize_for(prompt, pad_chunks, c.pad_token), clip_skip,
                                           N.projection[i], &pooled);
    r.context = width == 0 ? std::move(z) : concat_channels(r.context, width, z, c.width);
    width += c.width;
    r.pooled.insert(r.pooled.end(), pooled.begin(), pooled.end());
  }
  return r;
}

std::vector<float> SdPipeline::encode_prompt(const std::string& prompt, int clip_skip, int pad_chunks) {
  return encode_text(prompt, clip_skip, pad_chunks).context;
}

GuidedConditioning SdPipeline::condition(const GenerateParams& p, Observer* obs, double& text_ms) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const ModelConfig& cfg = config();
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
  const int width = cfg.context_width();
  // The vector y: the pooled vectors, then the size embeddings (the same in both branches).
  std::vector<float> size_emb;
  if (cfg.size_embed_dim > 0) size_emb = sdxl_size_embedding(size_conditioning(p), cfg.size_embed_dim);
  auto finish = [&](Conditioning& r, std::vector<float> pooled) {
    r.width = width;
    r.tokens = (int)(r.context.size() / (size_t)width);
    if (cfg.unet.adm_in_channels > 0) {
      r.y = std::move(pooled);
      r.y.insert(r.y.end(), size_emb.begin(), size_emb.end());
    }
  };
  auto text = [&](const std::string& s, const char* what) {
    Conditioning r;
    TextOutput t = encode_text(s, p.clip_skip, chunks);
    r.context = std::move(t.context);
    require_finite(r.context, what);
    finish(r, std::move(t.pooled));
    return r;
  };
  c.cond = text(prompt, "the text embeddings of the prompt");
  if (c.guided) {
    if (cfg.force_zeros_for_empty_prompt && p.negative_prompt.empty()) {
      // The reference's unconditional branch for an empty negative prompt: zeroed text
      // (context and pooled), the size embeddings kept.
      c.uncond.context.assign(c.cond.context.size(), 0.f);
      finish(c.uncond, std::vector<float>((size_t)cfg.pooled_width(), 0.f));
    } else {
      c.uncond = text(p.negative_prompt, "the text embeddings of the negative prompt");
    }
  }
  if (lowvram_) nets_->release_text();
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
