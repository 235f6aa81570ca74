// The SDXL base family as data (sgm configs/inference/sd_xl_base.yaml, SDXL 1.0), for the staged
// pipeline: what its networks are, where their weights live in a single file, and the parts of
// the UNet description that SDXL adds to SD 1.x/2.x (a transformer depth per level, a middle
// depth, the vector input y of adm_in_channels through label_emb), read off a checkpoint's tensors.
//
//   text      CLIP ViT-L/14 (penultimate) + OpenCLIP ViT-bigG/14 (penultimate + pooled 1280),
//             context 768 + 1280 = 2048                              (model/sdxl_text.h)
//   vector y  pooled 1280 + 3 x 512 size embeddings = 2816           (diffusion/sdxl_size_conditioning.h)
//   UNet      320 channels, mult [1, 2, 4], 2 res blocks per level, transformer depth per level
//             [0, 2, 10] (no attention at level 0), middle depth 10, heads of 64 channels,
//             linear proj_in/proj_out, emb = time_embed(t) + label_emb(y) where
//             label_emb = Sequential(Sequential(Linear(2816, 1280), SiLU, Linear(1280, 1280)))
//   VAE       the SD AutoencoderKL, latent scale factor 0.13025
//   schedule  eps-prediction, DDPM "linear" betas 0.00085 .. 0.012 in sqrt space (diffusers'
//             scaled_linear), 1000 steps; trained at 1024 x 1024
#pragma once
#include <map>
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "runtime/model/model_config.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/sdxl_text.h"

namespace vksd {

// What SDXL's UNet adds to UNetConfig (until UNetConfig holds it itself).
struct SdxlUNetDescription {
  int in_channels = 4, out_channels = 4;
  int model_channels = 320;
  std::vector<int> channel_mult = {1, 2, 4};
  int num_res_blocks = 2;
  std::vector<int> transformer_depth = {0, 2, 10};  // per level; 0 = no SpatialTransformer there
  int transformer_depth_middle = 10;
  int num_head_channels = 64;
  int context_dim = 2048;
  int adm_in_channels = 2816;  // the length of y
  bool use_linear_in_transformer = true;
  int time_embed_dim() const { return model_channels * 4; }
};

struct SdxlFamilyDescription {
  SdxlTextConfig text = sdxl_text_defaults();
  SdxlUNetDescription unet;
  VaeConfig vae;            // SD's AutoencoderKL with scale_factor 0.13025
  ScheduleConfig schedule;  // SD's, epsilon
  int sample_size = 1024;
  int size_embed_dim = 256;  // per size number (ConcatTimestepEmbedderND outdim)
  // Single-file key prefixes of the four parts.
  const char* unet_prefix = kUNetPrefix;
  const char* vae_prefix = kVaePrefix;
  const char* clip_l_prefix = kSdxlClipLPrefix;
  const char* clip_g_prefix = kSdxlClipGPrefix;
};

// SDXL 1.0 base.
const SdxlFamilyDescription& sdxl_base();

// Fills the fields ModelConfig has today from the description (sample size, UNet
// channels/levels/heads/context/linear projections, attention_levels from the per-level depth,
// the VAE scale factor, the schedule; clip = the CLIP ViT-L encoder's config, the first of the
// two whose outputs the context concatenates).
void apply_sdxl_description(ModelConfig& cfg, const SdxlFamilyDescription& d = sdxl_base());

// label_emb's tensors (model.diffusion_model.label_emb.0.0 / .0.2).
std::vector<TensorSpec> sdxl_label_emb_layout(const SdxlUNetDescription& u);

// The SDXL UNet description read off a single file's UNet tensors (name -> shape, full names):
// channels, levels, res blocks, the transformer depth of every level and of the middle block,
// context width, adm_in_channels, projection kind. Head width is not in the shapes: it stays
// `num_head_channels`. Error naming the tensor for anything that is not an SDXL-style UNet.
SdxlUNetDescription sdxl_unet_from_tensors(const std::map<std::string, Shape>& unet_tensors, int num_head_channels = 64);

}  // namespace vksd
