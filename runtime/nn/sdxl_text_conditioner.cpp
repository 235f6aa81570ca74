#include "runtime/nn/sdxl_text_conditioner.h"

#include "runtime/error.h"

namespace vksd::nn {

SdxlTextConditioner::SdxlTextConditioner(Context& ctx, const WeightStore& clip_l, const WeightStore& clip_g,
                                         const SdxlTextConfig& cfg, std::vector<float> projection, int batch,
                                         NetOptions opts)
    : cfg_(cfg), projection_(std::move(projection)), batch_(batch) {
  if (cfg.clip_l.max_length != cfg.clip_g.max_length)
    fail("SDXL text encoders disagree on the context length (" + std::to_string(cfg.clip_l.max_length) + " vs " +
         std::to_string(cfg.clip_g.max_length) + " tokens)");
  if (projection_.size() != (size_t)cfg.clip_g.width * cfg.projection_dim)
    fail("SdxlTextConditioner: text_projection holds " + std::to_string(projection_.size()) + " values, expected " +
         std::to_string(cfg.clip_g.width) + " x " + std::to_string(cfg.projection_dim));
  if (cfg.clip_g.used_layers() < 2) fail("SdxlTextConditioner: the bigG encoder needs two layers (penultimate + last)");
  clip_l_ = std::make_unique<TextEncoder>(ctx, clip_l, cfg.clip_l, batch, opts);
  clip_g_ = std::make_unique<TextEncoder>(ctx, clip_g, cfg.clip_g, batch, opts);
}

SdxlTextConditioner::~SdxlTextConditioner() = default;

SdxlTextOutput SdxlTextConditioner::encode(const std::vector<int32_t>& ids_l, const std::vector<int32_t>& ids_g) {
  const int L = cfg_.clip_l.max_length;
  // ViT-L: its TextEncoder stops at the penultimate layer (skip_last_layers = 1); SDXL takes
  // that layer's output before the final LayerNorm.
  clip_l_->encode(ids_l);
  std::vector<float> hidden_l = clip_l_->layer_output(cfg_.clip_l.used_layers() - 1);
  // bigG: all layers; encode() returns ln_final(last), the context is the penultimate output.
  std::vector<float> last_ln = clip_g_->encode(ids_g);
  std::vector<float> hidden_g = clip_g_->layer_output(cfg_.clip_g.used_layers() - 2);

  SdxlTextOutput out;
  out.context = concat_channels(hidden_l, cfg_.clip_l.width, hidden_g, cfg_.clip_g.width);
  out.pooled = pooled_text_embedding(last_ln, ids_g, batch_, L, cfg_.clip_g.width, projection_, cfg_.projection_dim,
                                     cfg_.clip_g.eos_token);
  return out;
}

SdxlTextOutput zero_text_conditioning(const SdxlTextConfig& cfg, int batch) {
  SdxlTextOutput out;
  out.context.assign((size_t)batch * cfg.clip_l.max_length * cfg.context_dim(), 0.f);
  out.pooled.assign((size_t)batch * cfg.projection_dim, 0.f);
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

}  // namespace vksd::nn
