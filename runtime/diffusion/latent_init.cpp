#include "runtime/diffusion/latent_init.h"

#include <cmath>
#include <string>

#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"

namespace vksd {

std::vector<float> repaint_fraction(const std::vector<float>& mask, int height, int width, int f) {
  const int lh = height / f, lw = width / f;
  std::vector<float> r((size_t)lh * lw, 0.f);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      r[(size_t)(y / f) * lw + x / f] += (mask[(size_t)y * width + x] >= 0.5f ? 1.f : 0.f) / (f * f);
  return r;
}

LatentStart initial_latent(const GenerateParams& p, const Sampler& sampler, Latent noise, Latent init,
                           std::vector<float> repaint, const std::string& init_noise) {
  LatentStart s;
  const size_t n = noise.size();
  s.noise = std::move(noise);
  s.init = std::move(init);
  s.repaint = std::move(repaint);
  s.x.resize(n);
  if (p.start_latent) {
    s.first = p.start_step;
    s.x.assign(p.start_latent->begin(), p.start_latent->end());
  } else if (!s.init.empty()) {
    s.first = sampler.steps() - (int)(sampler.steps() * p.strength);
    const NoiseLevel lv = sampler.level(s.first);
    for (size_t i = 0; i < n; ++i) s.x[i] = lv.signal * s.init[i] + lv.noise * s.noise[i];
    if (s.first == sampler.steps()) s.x = s.init;  // strength 0: the image itself
  } else {
    double scale = sampler.init_noise_scale();
    if (init_noise == "sqrt_sigma2_plus_1") {
      const NoiseLevel lv = sampler.level(0);
      scale = std::sqrt(lv.signal * lv.signal + lv.noise * lv.noise);
    } else if (init_noise != "sigma") {
      fail("schedule.init_noise '" + init_noise + "' is not supported (sigma or sqrt_sigma2_plus_1)");
    }
    for (size_t i = 0; i < n; ++i) s.x[i] = s.noise[i] * scale;
  }
  return s;
}

void keep_known(const LatentStart& s, const Sampler& sampler, int index, Latent& x) {
  if (s.repaint.empty()) return;
  const NoiseLevel lv = sampler.level(index + 1);
  const bool last = index + 1 == sampler.steps();
  const size_t plane = s.repaint.size(), channels = x.size() / plane;
  for (size_t c = 0; c < channels; ++c)
    for (size_t i = 0; i < plane; ++i) {
      const size_t k = c * plane + i;
      const double known = last ? s.init[k] : lv.signal * s.init[k] + lv.noise * s.noise[k];
      x[k] = s.repaint[i] * x[k] + (1.0 - s.repaint[i]) * known;
    }
}

}  // namespace vksd
