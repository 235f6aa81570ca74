// Latent initialisation: where the sampler starts. Text-to-image: the seed's noise at the
// sampler's initial scale. Image-to-image: the init image's latent noised to the level of the
// first step `strength` allows. Resume: a given latent at a given step. Inpainting with an
// ordinary (4-channel) UNet also keeps the init latent and a soft mask here, because the known
// region is re-imposed after every step (keep_known).
#pragma once
#include <vector>

#include "runtime/diffusion/samplers.h"

namespace vksd {

struct GenerateParams;

// What the init image of img2img / inpainting gives the run (SdPipeline::encode_init_image):
// all empty without one.
struct InitImage {
  Latent latent;                // its clean latent (VAE posterior mean x scale factor)
  std::vector<float> repaint;   // 4-channel UNet with a mask: repaint_fraction, for keep_known
  std::vector<float> concat;    // 9-channel inpainting UNet: inpaint_concat, its extra input channels
};

struct LatentStart {
  Latent x;         // the latent the first step starts from
  int first = 0;    // the first step of the schedule to run
  Latent noise;     // the seed's noise [C, h, w] (also what the known region is noised with)
  Latent init;      // the init image's clean latent; empty without one
  // [h, w], the fraction of each latent pixel to repaint (1 = all); empty = nothing re-imposed.
  std::vector<float> repaint;
};

// The soft latent-resolution mask of a mask image [H, W] (>= 0.5 = repaint): the fraction of
// each f x f block to repaint.
std::vector<float> repaint_fraction(const std::vector<float>& mask, int height, int width, int f);

// The starting latent for p. `init` is the init image's clean latent (empty without one),
// `repaint` its mask for 4-channel inpainting (empty otherwise). `init_noise`: the model's
// pure-noise start (ScheduleConfig::init_noise): "sigma" = noise * Sampler::init_noise_scale();
// "sqrt_sigma2_plus_1" = noise * |level(0)| = noise * sqrt(1 + sigma_max^2) for the sigma
// samplers (sgm's rule) and noise alone for the DDPM-scaled ones, whose level(0) has norm 1.
LatentStart initial_latent(const GenerateParams& p, const Sampler& sampler, Latent noise, Latent init,
                           std::vector<float> repaint, const std::string& init_noise = "sigma");

// After step `index` (0-based): outside the mask, put back the init latent noised to where the
// sampler now is (clean after the last step). A no-op when there is nothing to re-impose.
void keep_known(const LatentStart& s, const Sampler& sampler, int index, Latent& x);

}  // namespace vksd
