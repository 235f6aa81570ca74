// The diffusers folder layout of an SD 1.x model and its mapping onto the original single-file
// key layout. Internal to the checkpoint loader; exposed for tests.
//
// Renaming rules (diffusers UNet2DConditionModel / AutoencoderKL / CLIPTextModel -> LDM):
//   UNet  conv_in -> input_blocks.0.0, time_embedding.linear_{1,2} -> time_embed.{0,2},
//         down_blocks.i.{resnets,attentions}.j -> input_blocks.(1 + i(n+1) + j).{0,1},
//         down_blocks.i.downsamplers.0.conv -> input_blocks.((i+1)(n+1)).0.op,
//         mid_block.{resnets.0, attentions.0, resnets.1} -> middle_block.{0,1,2},
//         up_blocks.i.{resnets,attentions}.j -> output_blocks.(i(n+1) + j).{0,1},
//         up_blocks.i.upsamplers.0.conv -> output_blocks.(i(n+1) + n).{1, or 2 after attention}.conv,
//         conv_norm_out -> out.0, conv_out -> out.2   (n = layers_per_block)
//         resnet norm1/conv1/time_emb_proj/norm2/conv2/conv_shortcut ->
//                in_layers.0/in_layers.2/emb_layers.1/out_layers.0/out_layers.3/skip_connection;
//         names below an attention (norm, proj_in, transformer_blocks.*, proj_out) are unchanged.
//   VAE   {en,de}coder.down_blocks.i.resnets.j -> encoder.down.i.block.j (conv_shortcut -> nin_shortcut),
//         downsamplers.0 -> downsample, decoder.up_blocks.i -> decoder.up.(L-1-i) (reversed),
//         upsamplers.0 -> upsample, mid_block.resnets.{0,1} -> mid.block_{1,2},
//         mid_block.attentions.0.{group_norm, query|to_q, key|to_k, value|to_v, proj_attn|to_out.0}
//                -> mid.attn_1.{norm, q, k, v, proj_out} (linear [C,C] stored as conv [C,C,1,1]),
//         conv_norm_out -> norm_out; conv_in, conv_out, quant_conv, post_quant_conv unchanged.
//   CLIP  text_model.* -> cond_stage_model.transformer.text_model.*
#pragma once
#include <string>
#include <vector>

#include "runtime/model/model_config.h"

namespace vksd {

class Json;

// What the mapping needs to know about a diffusers UNet, read off its key names.
struct DiffusersUNetShape {
  int levels = 0;
  int layers_per_block = 0;
  std::vector<bool> attention;  // per down level
};
DiffusersUNetShape diffusers_unet_shape(const std::vector<std::string>& keys);

// Original name (with its network prefix) of a diffusers key; "" when it has none.
std::string diffusers_unet_key(const std::string& key, const DiffusersUNetShape& s);
std::string diffusers_vae_key(const std::string& key, int levels);
std::string diffusers_clip_key(const std::string& key);

// Apply a diffusers config.json (`component`: "unet", "vae", "text_encoder", "scheduler") to cfg,
// which already holds the shape-inferred architecture: fields shapes cannot tell are taken,
// shape fields are cross-checked (Error on disagreement). Unknown keys are ignored.
void apply_diffusers_config(ModelConfig& cfg, const std::string& component, const Json& j, const std::string& what);

}  // namespace vksd
