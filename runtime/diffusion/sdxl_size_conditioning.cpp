#include "runtime/diffusion/sdxl_size_conditioning.h"

#include <cmath>
#include <string>

#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"

namespace vksd {

SdxlSizeConditioning size_conditioning(const GenerateParams& p) {
  SdxlSizeConditioning s;
  s.original_w = p.original_width > 0 ? p.original_width : p.width;
  s.original_h = p.original_height > 0 ? p.original_height : p.height;
  s.target_w = p.target_width > 0 ? p.target_width : p.width;
  s.target_h = p.target_height > 0 ? p.target_height : p.height;
  s.crop_top = p.crop_top;
  s.crop_left = p.crop_left;
  return s;
}

std::vector<float> fourier_embedding(double value, int dim, double max_period) {
  if (dim < 2 || dim % 2) fail("fourier_embedding: dim " + std::to_string(dim) + " must be even and >= 2");
  if (!(max_period > 1)) fail("fourier_embedding: max_period must be > 1");
  if (!std::isfinite(value)) fail("fourier_embedding: the value is not finite");
  const int half = dim / 2;
  // sgm: freqs = exp(-log(max_period) * arange(half, float32) / half); args = t.float() * freqs,
  // each step in float32.
  const float neg_log = (float)-std::log(max_period);
  const float t = (float)value;
  std::vector<float> out((size_t)dim);
  for (int i = 0; i < half; ++i) {
    const float exponent = neg_log * (float)i / (float)half;
    const float freq = (float)std::exp((double)exponent);
    const float arg = t * freq;
    out[(size_t)i] = (float)std::cos((double)arg);
    out[(size_t)(half + i)] = (float)std::sin((double)arg);
  }
  return out;
}

std::vector<float> pair_embedding(double a, double b, int dim) {
  std::vector<float> out = fourier_embedding(a, dim);
  const std::vector<float> second = fourier_embedding(b, dim);
  out.insert(out.end(), second.begin(), second.end());
  return out;
}

std::vector<float> sdxl_size_embedding(const SdxlSizeConditioning& s, int dim) {
  for (int v : {s.original_h, s.original_w, s.target_h, s.target_w})
    if (v <= 0) fail("SDXL size conditioning: sizes must be positive (got " + std::to_string(v) + ")");
  if (s.crop_top < 0 || s.crop_left < 0) fail("SDXL size conditioning: crop coordinates must be >= 0");
  std::vector<float> out = pair_embedding(s.original_h, s.original_w, dim);
  for (const auto& e : {pair_embedding(s.crop_top, s.crop_left, dim), pair_embedding(s.target_h, s.target_w, dim)})
    out.insert(out.end(), e.begin(), e.end());
  return out;
}

std::vector<float> sdxl_vector_y(const std::vector<float>& pooled, int batch, int pooled_dim,
                                 const SdxlSizeConditioning& s, int dim) {
  if (batch < 1 || pooled_dim < 0 || pooled.size() != (size_t)batch * pooled_dim)
    fail("sdxl_vector_y: " + std::to_string(pooled.size()) + " pooled values for batch " + std::to_string(batch) +
         " x " + std::to_string(pooled_dim));
  const std::vector<float> sizes = sdxl_size_embedding(s, dim);
  std::vector<float> y;
  y.reserve((size_t)batch * (pooled_dim + sizes.size()));
  for (int b = 0; b < batch; ++b) {
    y.insert(y.end(), pooled.begin() + (size_t)b * pooled_dim, pooled.begin() + (size_t)(b + 1) * pooled_dim);
    y.insert(y.end(), sizes.begin(), sizes.end());
  }
  return y;
}

}  // namespace vksd
