// SdPipeline's resident networks (private to the pipeline's stage files): each network and its
// weights are created on first use and dropped by release_* (lowvram: after its stage).
#pragma once
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/diffusion/pipeline.h"
#include "runtime/model/lora.h"
#include "runtime/model/weights.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/nn/unet.h"
#include "runtime/nn/vae_tiled.h"

namespace vksd {

// The LoRA state of one resident weight store: which files (with weights) are merged into it
// and which of its tensors differ from the checkpoint because of them.
struct LoraMerged {
  std::vector<LoraRef> applied;
  std::set<std::string> tensors;
};

struct SdPipeline::Nets {
  std::unique_ptr<WeightStore> unet_w;
  // The VAE's halves (network_prefixes.h): the encoder is loaded only for an init image.
  std::unique_ptr<WeightStore> vae_dec_w, vae_enc_w;
  LoraMerged unet_lora;
  // One per text encoder of the model (ModelConfig::text_encoder(i)); projection: the pooled
  // encoders' text_projection on the host.
  std::vector<std::unique_ptr<WeightStore>> text_w;
  std::vector<LoraMerged> text_lora;
  std::vector<std::unique_ptr<nn::TextEncoder>> text;
  std::vector<std::vector<float>> projection;
  std::unique_ptr<nn::UNet> unet;
  int unet_batch = 0, unet_h = 0, unet_w_ = 0, unet_ctx = 0;
  bool unet_maps = false;     // built with NetOptions::attention_maps
  bool unet_profile = false;  // built with NetOptions::profile
  // Untiled = one tile spanning the whole latent (the plain VaeDecoder/VaeEncoder graph).
  std::unique_ptr<nn::TiledVaeDecoder> dec;
  int dec_h = 0, dec_w = 0;
  std::unique_ptr<nn::TiledVaeEncoder> enc;
  int enc_h = 0, enc_w = 0;

  void release_text() { text.clear(), text_w.clear(), text_lora.clear(); }
  void release_unet() { unet.reset(), unet_w.reset(), unet_batch = 0, unet_lora = {}; }
  void release_vae() { dec.reset(), enc.reset(), vae_dec_w.reset(), vae_enc_w.reset(), dec_h = enc_h = 0; }
};

// Upload one network's weights (keys under `prefix`) with the merged LoRA set (pipeline.cpp).
std::unique_ptr<WeightStore> load_merged(Context& ctx, const Checkpoint& ck, const std::string& prefix, DType dtype,
                                         const std::vector<ActiveLora>& loras, LoraMerged& state);

}  // namespace vksd
