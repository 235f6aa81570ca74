// The OpenCLIP text tower of an SD 2.x single file (cond_stage_model.model.*, open_clip's
// names) seen under the Hugging Face CLIPTextModel names vksd's text encoder is written with
// (cond_stage_model.transformer.text_model.*). Both name the same transformer:
//   token_embedding.weight                    -> embeddings.token_embedding.weight
//   positional_embedding                      -> embeddings.position_embedding.weight
//   transformer.resblocks.N.ln_1 / ln_2       -> encoder.layers.N.layer_norm1 / layer_norm2
//   transformer.resblocks.N.attn.in_proj_weight [3D, D] (rows q; k; v)
//                                             -> encoder.layers.N.self_attn.{q,k,v}_proj.weight
//   transformer.resblocks.N.attn.in_proj_bias [3D] -> ...{q,k,v}_proj.bias
//   transformer.resblocks.N.attn.out_proj     -> encoder.layers.N.self_attn.out_proj
//   transformer.resblocks.N.mlp.c_fc / c_proj -> encoder.layers.N.mlp.fc1 / fc2
//   ln_final                                  -> final_layer_norm
// text_projection and logit_scale (the contrastive head) are not part of the text encoder SD
// uses. Internal to the checkpoint loader; exposed for tests.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"

namespace vksd {

inline constexpr const char* kOpenClipPrefix = "cond_stage_model.model.";

// One original-layout tensor made from (part of) a stored one: rows [row0, row0 + rows) of the
// stored tensor's first dimension (rows < 0: all of it).
struct KeySlice {
  std::string name;
  int64_t row0 = 0, rows = -1;
};

// The tensors a stored OpenCLIP key (without kOpenClipPrefix) of shape `shape` provides, under
// their full CLIPTextModel names (kClipPrefix included). Empty: not a text-encoder weight
// (text_projection, logit_scale, attn_mask). A key that fits no rule keeps its own name, so that
// the layout check reports it as unexpected.
std::vector<KeySlice> openclip_text_keys(const std::string& key, const Shape& shape);

}  // namespace vksd
