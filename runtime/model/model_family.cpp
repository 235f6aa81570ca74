#include "runtime/model/model_family.h"

#include "runtime/error.h"
#include "runtime/model/openclip_keys.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/sdxl_family.h"

namespace vksd {

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// What a set of key names holds, one flag per telltale prefix or module name.
struct KeyTraits {
  bool sd1_text = false, openclip_text = false, sdxl_conditioner = false, sdxl_second_embedder = false;
  bool label_emb = false, unclip_parts = false, joint_blocks = false, double_blocks = false;
  bool cascade = false, x_embedder = false, caption_projection = false, lora = false;
  bool depth_model = false, low_scale_model = false;

  explicit KeyTraits(const std::vector<std::string>& keys) {
    for (const auto& k : keys) {
      sd1_text |= k.starts_with("cond_stage_model.transformer.");
      openclip_text |= k.starts_with(kOpenClipPrefix);
      sdxl_conditioner |= k.starts_with("conditioner.embedders.");
      sdxl_second_embedder |= k.starts_with("conditioner.embedders.1.");
      label_emb |= k.starts_with("model.diffusion_model.label_emb.");
      unclip_parts |= k.starts_with("embedder.model.visual.") || k.starts_with("noise_augmentor.");
      joint_blocks |= has(k, "joint_blocks.");
      double_blocks |= has(k, "double_blocks.");
      cascade |= k.starts_with("clip_txt_mapper.") || k.starts_with("clip_txt_pooled_mapper.") ||
                 k.starts_with("effnet_mapper");
      x_embedder |= k.starts_with("x_embedder.") || has(k, ".x_embedder.");
      caption_projection |= has(k, "y_embedder.y_proj.");
      lora |= k.starts_with("lora_unet_") || k.starts_with("lora_te") || has(k, ".lora_down.") ||
              has(k, ".lora_up.") || has(k, ".lora_A.") || has(k, ".lora_B.");
      depth_model |= k.starts_with("depth_model.");
      low_scale_model |= k.starts_with("low_scale_model.");
    }
  }
};

[[noreturn]] void refuse(const std::string& path, const std::string& what, const std::string& why) {
  fail(path + ": this is " + what + " (" + why + "); vksd runs SD 1.x, SD 2.x and SDXL base checkpoints only");
}

}  // namespace

const char* model_family_name(ModelFamily f) {
  return f == ModelFamily::SDXL ? "SDXL" : f == ModelFamily::SD2 ? "SD 2.x" : "SD 1.x";
}

const char* text_encoder_kind(ModelFamily f) {
  if (f == ModelFamily::SDXL)
    return "OpenAI CLIP ViT-L/14 + OpenCLIP ViT-bigG/14 (both penultimate layers, concatenated; bigG's pooled "
           "vector)";
  return f == ModelFamily::SD2 ? "OpenCLIP ViT-H/14 text tower (penultimate layer + ln_final)"
                               : "OpenAI CLIP ViT-L/14 text transformer (last layer + final_layer_norm)";
}

ModelFamily single_file_family(const std::vector<std::string>& keys, const std::string& path) {
  const KeyTraits t(keys);
  // The most specific telltales first: an SD3 or unCLIP file also has parts of the others.
  if (t.lora) refuse(path, "a LoRA file", "lora_* keys: weights to add to a base model, not a model");
  if (t.joint_blocks) refuse(path, "a Stable Diffusion 3 checkpoint", "MMDiT joint_blocks");
  if (t.double_blocks) refuse(path, "a Flux checkpoint", "double_blocks");
  if (t.cascade) refuse(path, "a Stable Cascade (Wuerstchen) checkpoint", "clip_txt_mapper / effnet_mapper");
  if (t.x_embedder && t.caption_projection) refuse(path, "a PixArt checkpoint", "a diffusion transformer with y_embedder.y_proj");
  if (t.x_embedder) refuse(path, "a DiT checkpoint", "a diffusion transformer with x_embedder");
  if (t.unclip_parts) refuse(path, "an SD 2.x unCLIP checkpoint", "image embedder and noise_augmentor");
  if (t.sdxl_conditioner && !t.sdxl_second_embedder)
    refuse(path, "an SDXL refiner checkpoint", "one conditioner.embedders text encoder and label_emb");
  if (t.sdxl_conditioner && t.label_emb) return ModelFamily::SDXL;
  if (t.sdxl_conditioner) refuse(path, "an SDXL checkpoint", "conditioner.embedders.* text encoders");
  if (t.label_emb) refuse(path, "a UNet with vector conditioning (SDXL-style label_emb)", "model.diffusion_model.label_emb");
  if (t.depth_model) refuse(path, "an SD 2.x depth-to-image checkpoint", "depth_model.*");
  if (t.low_scale_model) refuse(path, "an SD x4 upscaler checkpoint", "low_scale_model.*");
  if (t.sd1_text && t.openclip_text)
    fail(path + ": holds two text encoders, cond_stage_model.transformer.* (SD 1.x CLIP) and " + kOpenClipPrefix +
         "* (SD 2.x OpenCLIP); a checkpoint has one");
  return t.openclip_text ? ModelFamily::SD2 : ModelFamily::SD1;
}

ModelFamily diffusers_family(const std::string& pipeline_class, const std::string& text_encoder_act,
                             bool has_second_text_encoder, const std::string& path) {
  const std::string& c = pipeline_class;
  const std::string why = "model_index.json: " + c;
  if (has(c, "StableDiffusion3")) refuse(path, "a Stable Diffusion 3 pipeline", why);
  if (has(c, "Flux")) refuse(path, "a Flux pipeline", why);
  // SDXL base: StableDiffusionXLPipeline with both text encoders (the refiner,
  // StableDiffusionXLImg2ImgPipeline, has text_encoder_2 only).
  if (c == "StableDiffusionXLPipeline" && has_second_text_encoder && !text_encoder_act.empty())
    return ModelFamily::SDXL;
  if (has(c, "XL")) refuse(path, "an SDXL pipeline", why);
  if (has(c, "UnCLIP")) refuse(path, "an SD unCLIP pipeline", why);
  if (has(c, "Cascade") || has(c, "Wuerstchen")) refuse(path, "a Stable Cascade pipeline", why);
  if (has(c, "PixArt")) refuse(path, "a PixArt pipeline", why);
  if (has(c, "DiT")) refuse(path, "a DiT pipeline", why);
  if (has(c, "Upscale")) refuse(path, "an SD upscaler pipeline", why);
  if (has(c, "Depth2Img")) refuse(path, "an SD 2.x depth-to-image pipeline", why);
  if (has_second_text_encoder) refuse(path, "an SDXL pipeline", "a text_encoder_2 folder");
  // OpenCLIP's text tower as a CLIPTextModel differs from OpenAI CLIP's in its activation.
  return text_encoder_act == "gelu" ? ModelFamily::SD2 : ModelFamily::SD1;
}

void apply_family_defaults(ModelConfig& cfg, ModelFamily f) {
  cfg.family = f;
  if (f == ModelFamily::SDXL) return apply_sdxl_defaults(cfg);
  const ModelConfig sd1;
  cfg.clip.heads = sd1.clip.heads;
  cfg.clip.quick_gelu = sd1.clip.quick_gelu;
  cfg.clip.pad_token = sd1.clip.pad_token;
  cfg.unet.num_heads = sd1.unet.num_heads;
  cfg.unet.num_head_channels = sd1.unet.num_head_channels;
  if (f == ModelFamily::SD2) {
    cfg.clip.heads = 16;           // ViT-H/14: width 1024, 16 heads of 64
    cfg.clip.quick_gelu = false;   // OpenCLIP uses exact (erf) GELU
    cfg.clip.pad_token = 0;        // open_clip.tokenize pads with 0
    cfg.unet.num_head_channels = 64;  // v2-inference(-v).yaml: num_head_channels 64
    cfg.clip.openclip_prefix = kOpenClipPrefix;  // single files: the whole OpenCLIP tower...
    cfg.clip.openclip_unused_layers = 1;         // ...of which SD 2.x uses all but the last layer
  }
}

}  // namespace vksd
