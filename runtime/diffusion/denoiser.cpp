#include "runtime/diffusion/denoiser.h"

#include "runtime/diffusion/schedule.h"
#include "runtime/error.h"
#include "runtime/gpu/graph.h"
#include "runtime/nn/unet.h"

namespace vksd {

namespace {

// The batch's values of one per-branch input, [uncond, cond] with guidance.
std::vector<float> batched(bool guided, const std::vector<float>& uncond, const std::vector<float>& cond) {
  std::vector<float> r;
  if (guided) r = uncond;
  r.insert(r.end(), cond.begin(), cond.end());
  return r;
}

}  // namespace

Denoiser::Denoiser(nn::UNet& unet, const GuidedConditioning& c, int latent_channels, Options o)
    : unet_(unet), guided_(c.guided), o_(o) {
  if (unet.batch() != (guided_ ? 2 : 1)) fail("Denoiser: the UNet's batch does not match the guidance");
  n_ = (size_t)latent_channels * unet.latent_h() * unet.latent_w();
  unet_.set_context(batched(guided_, c.uncond.context, c.cond.context));
  if (unet_.has_y()) {
    if (c.cond.y.empty() || (guided_ && c.uncond.y.empty()))
      fail("this model's UNet takes a vector input y, and the conditioning has none");
    unet_.set_y(batched(guided_, c.uncond.y, c.cond.y));
  } else if (!c.cond.y.empty()) {
    fail("the conditioning has a vector input y, and this model's UNet takes none");
  }
  concat_cond_ = c.cond.concat;
  concat_uncond_ = guided_ ? c.uncond.concat : std::vector<float>{};
}

Latent Denoiser::operator()(const Latent& x_in, double t) {
  const int batch = guided_ ? 2 : 1;
  if (o_.observed) x_in_.assign(x_in.begin(), x_in.end());
  // Per batch entry: the latent, then the branch's concatenated channels.
  const size_t entry = n_ + concat_cond_.size();
  std::vector<float> in((size_t)batch * entry);
  for (int b = 0; b < batch; ++b) {
    float* dst = in.data() + (size_t)b * entry;
    for (size_t i = 0; i < n_; ++i) dst[i] = (float)x_in[i];
    const std::vector<float>& extra = guided_ && b == 0 ? concat_uncond_ : concat_cond_;
    std::copy(extra.begin(), extra.end(), dst + n_);
  }
  std::vector<float> ts((size_t)batch, (float)t);
  auto out = unet_.forward(in, ts);
  if (o_.profile) timings_ = unet_.graph().timings();
  if (o_.attention_maps) {
    const auto& layers = unet_.attention_layers();
    attention_.resize(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      AttentionMap& m = attention_[i];
      m.block = layers[i].block;
      m.level = layers[i].level;
      m.height = layers[i].height, m.width = layers[i].width;
      m.tokens = layers[i].tokens;
      m.probs = unet_.attention_probs(i);
    }
  }
  if (out.size() != (size_t)batch * n_) fail("UNet returned an unexpected output size");
  Latent e(n_);
  if (guided_) {
    out_uncond_.assign(out.begin(), out.begin() + (ptrdiff_t)n_);
    out_cond_.assign(out.begin() + (ptrdiff_t)n_, out.end());
    const float s = (float)o_.cfg_scale;
    for (size_t i = 0; i < n_; ++i) e[i] = out_uncond_[i] + s * (out_cond_[i] - out_uncond_[i]);
  } else {
    out_cond_ = std::move(out);
    for (size_t i = 0; i < n_; ++i) e[i] = out_cond_[i];
  }
  return e;
}

void Denoiser::branches_to_eps(const NoiseSchedule& s, double sigma) {
  if (s.prediction() == Prediction::Epsilon) return;
  const double a = 1.0 / (1.0 + sigma * sigma);
  const Latent x_in(x_in_.begin(), x_in_.end());
  for (std::vector<float>* half : {&out_cond_, &out_uncond_}) {
    if (half->size() != x_in.size()) continue;  // no uncond branch without guidance
    Latent o(half->begin(), half->end());
    s.output_to_eps(x_in, o, a);
    half->assign(o.begin(), o.end());
  }
}

}  // namespace vksd
