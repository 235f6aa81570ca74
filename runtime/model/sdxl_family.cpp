#include "runtime/model/sdxl_family.h"

namespace vksd {

void apply_sdxl_defaults(ModelConfig& cfg) {
  cfg.family = ModelFamily::SDXL;
  cfg.sample_size = 1024;
  ClipConfig l;  // OpenAI CLIP ViT-L/14: 768 wide, 12 layers, 12 heads, quick-GELU, pads with EOS
  l.prefix = kSdxlClipLPrefix;
  l.context_skip = 1;  // hidden_states[-2]
  l.final_norm = false;
  ClipConfig g;
  g.prefix = kSdxlClipGPrefix;
  g.openclip_prefix = kSdxlOpenClipGPrefix;
  g.width = 1280, g.layers = 32, g.heads = 20, g.mlp_dim = 5120;
  g.quick_gelu = false;  // open_clip: exact (erf) GELU
  g.pad_token = 0;       // open_clip.tokenize pads with 0
  g.context_skip = 1;    // "penultimate"
  g.final_norm = false;  // legacy = False: no ln_final on the context
  g.pooled_dim = 1280;
  cfg.clip = l;
  cfg.more_text_encoders = {g};
  cfg.size_embed_dim = 256;
  cfg.force_zeros_for_empty_prompt = true;  // ConcatTimestepEmbedderND(outdim 256)
  cfg.unet.num_head_channels = 64;
  cfg.unet.use_linear_in_transformer = true;
  cfg.vae.scale_factor = 0.13025f;
  cfg.vae.fp32_activations = true;  // its decoder overflows fp16 (runtime/diffusion/precision_plan.h)
  cfg.schedule.prediction_type = "epsilon";
  cfg.schedule.beta_schedule = "scaled_linear";
  cfg.schedule.timestep_spacing = "trailing";
  cfg.schedule.init_noise = "sqrt_sigma2_plus_1";
  cfg.preview = LatentRgbMap::sdxl();
}

}  // namespace vksd
