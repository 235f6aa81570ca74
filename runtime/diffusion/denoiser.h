// The denoiser stage: the UNet as the samplers see it (a ModelFn). It owns the UNet's extra
// inputs (cross-attention context, vector input y, concatenated channels: one Conditioning per
// branch), classifier-free guidance (the batch [uncond, cond] and
// out = out_uncond + scale (out_cond - out_uncond)), and what the observers are shown of each
// evaluation: the UNet input, both branches' outputs as noise predictions whatever the model
// predicts (eps or v), attention maps and dispatch timings.
//
// The prediction type's conversion of the guided output (v -> eps) is the sampler's
// (Sampler::eval_eps, tested without networks); guidance is linear, so converting the branches
// here (branches_to_eps) gives the same eps the sampler used.
#pragma once
#include <vector>

#include "runtime/diffusion/conditioner.h"
#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/samplers.h"

namespace vksd {

namespace nn {
class UNet;
}
class NoiseSchedule;

class Denoiser {
 public:
  struct Options {
    double cfg_scale = 7.0;
    bool observed = false;        // keep x_in and both branches' outputs for observers
    bool attention_maps = false;  // read the UNet's cross-attention maps back after each evaluation
    bool profile = false;         // read the UNet's dispatch timings back after each evaluation
  };
  // Uploads the conditioning (context, y) to `unet`, built for batch 2 with guidance, else 1.
  Denoiser(nn::UNet& unet, const GuidedConditioning& c, int latent_channels, Options o);

  // The sampler's model: the guided UNet output for the latent x_in [C, h, w] at timestep t.
  Latent operator()(const Latent& x_in, double t);

  // The last evaluation, for observers.
  const std::vector<float>& x_in() const { return x_in_; }
  const std::vector<float>& out_cond() const { return out_cond_; }
  const std::vector<float>& out_uncond() const { return out_uncond_; }  // empty without guidance
  const std::vector<AttentionMap>& attention() const { return attention_; }
  const std::vector<DispatchTiming>& timings() const { return timings_; }
  // Turn both branches' outputs into noise predictions at noise level sigma (a no-op for eps
  // models): eps = sqrt(a) v + sqrt(1 - a) x_in with a = 1 / (1 + sigma^2).
  void branches_to_eps(const NoiseSchedule& s, double sigma);
  bool guided() const { return guided_; }

 private:
  nn::UNet& unet_;
  bool guided_;
  Options o_;
  size_t n_;                                 // latent values per batch entry
  std::vector<float> concat_uncond_, concat_cond_;
  std::vector<float> x_in_, out_cond_, out_uncond_;
  std::vector<AttentionMap> attention_;
  std::vector<DispatchTiming> timings_;
};

}  // namespace vksd
