// The VAE steps of SdPipeline: decoding the final latent, encoding an init image (tiled or not,
// PipelineOptions::vae_tiling) and the init image's contributions to a run (encode_init_image).
#include <algorithm>

#include "runtime/diffusion/conditioner.h"
#include "runtime/diffusion/finite_check.h"
#include "runtime/diffusion/latent_init.h"
#include "runtime/diffusion/pipeline_nets.h"
#include "runtime/error.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/sd1_layout.h"

namespace vksd {

bool SdPipeline::vae_tiled(int width, int height, bool lowvram) const {
  using T = PipelineOptions::VaeTiling;
  const int f = config().vae.downsample_factor();
  const int64_t latent_pixels = (int64_t)(height / f) * (width / f);
  const bool larger = height / f > opts_.vae_tile || width / f > opts_.vae_tile;
  switch (opts_.vae_tiling) {
    case T::Off: return false;
    case T::On: return larger;
    case T::Auto: return lowvram && latent_pixels > (int64_t)opts_.vae_tile * opts_.vae_tile;
  }
  return false;
}

PrecisionPlan SdPipeline::precision() const { return precision_plan(config(), dtype_, opts_.vae_fp16); }

// The VAE's activation precision (fp32 for a VAE that overflows fp16, precision_plan.h).
nn::NetOptions SdPipeline::vae_options() const {
  nn::NetOptions o;
  o.scratch = scratch_;
  o.activations = precision().vae.activations;
  return o;
}

// The tile geometry for a latent of h x w: the configured tiles, or one tile spanning it.
static nn::VaeTiles vae_tiles(bool tiled, const PipelineOptions& o, int h, int w) {
  if (tiled) return {o.vae_tile, o.vae_tile_overlap};
  return {std::max(h, w), 0};
}

std::vector<float> SdPipeline::decode_latent(const std::vector<float>& latent, int lh, int lw) {
  const auto& vc = config().vae;
  if (latent.size() != (size_t)vc.embed_dim * lh * lw) fail("decode_latent: latent size does not match its geometry");
  if (!nets_->vae_dec_w) nets_->vae_dec_w = load_weights(ctx_, *ckpt_, kVaeDecoderPrefixes, dtype_);
  if (!nets_->dec || nets_->dec_h != lh || nets_->dec_w != lw) {
    nets_->dec.reset();
    const int f = vc.downsample_factor();
    nets_->dec = std::make_unique<nn::TiledVaeDecoder>(ctx_, *nets_->vae_dec_w, vc, 1, lh, lw,
                                                       vae_tiles(vae_tiled(lw * f, lh * f), opts_, lh, lw), vae_options());
    nets_->dec_h = lh, nets_->dec_w = lw;
  }
  std::vector<float> z(latent.size());
  for (size_t i = 0; i < z.size(); ++i) z[i] = latent[i] / vc.scale_factor;
  return nets_->dec->decode(z);
}

std::vector<float> SdPipeline::encode_image(const std::vector<float>& image, int h, int w) {
  const auto& vc = config().vae;
  if (image.size() != (size_t)vc.in_channels * h * w) fail("encode_image: image size does not match its geometry");
  if (!nets_->vae_enc_w) nets_->vae_enc_w = load_weights(ctx_, *ckpt_, kVaeEncoderPrefixes, dtype_);
  if (!nets_->enc || nets_->enc_h != h || nets_->enc_w != w) {
    nets_->enc.reset();
    const int f = vc.downsample_factor();
    nets_->enc = std::make_unique<nn::TiledVaeEncoder>(ctx_, *nets_->vae_enc_w, vc, 1, h, w,
                                                       vae_tiles(vae_tiled(w, h), opts_, h / f, w / f), vae_options());
    nets_->enc_h = h, nets_->enc_w = w;
  }
  auto post = nets_->enc->encode(image);
  // The posterior mean (its mode), not a sample: img2img stays deterministic given the seed.
  for (auto& v : post.mean) v *= vc.scale_factor;
  return post.mean;
}

InitImage SdPipeline::encode_init_image(const GenerateParams& p, Observer* obs) {
  InitImage r;
  if (!p.init_image) return r;
  const ModelConfig& cfg = config();
  const int f = cfg.vae.downsample_factor();
  stage(obs, "encode image");
  auto img = image_to_tensor(*p.init_image);
  auto lat = encode_image(img, p.height, p.width);
  require_finite(lat, "the VAE encoding of the init image");
  r.latent.assign(lat.begin(), lat.end());
  if (p.mask) {
    const auto m = image_to_mask(*p.mask);
    if (cfg.unet.in_channels == 9) {
      // The inpainting UNet sees the mask and the masked image as input channels.
      mask_out(img, m);
      r.concat = inpaint_concat(m, p.height, p.width, f, encode_image(img, p.height, p.width));
    } else {
      // An ordinary UNet: the known region is re-imposed after every step.
      r.repaint = repaint_fraction(m, p.height, p.width, f);
    }
  }
  if (lowvram_) nets_->release_vae();
  return r;
}

}  // namespace vksd
