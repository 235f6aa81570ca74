#include "runtime/model/openclip_keys.h"

#include <cstdlib>

#include "runtime/model/sd1_layout.h"

namespace vksd {

std::vector<KeySlice> openclip_text_keys(const std::string& key, const Shape& shape) {
  const std::string T = kClipPrefix;
  if (key == "text_projection" || key == "logit_scale" || key == "attn_mask") return {};
  if (key == "token_embedding.weight") return {{T + "embeddings.token_embedding.weight"}};
  if (key == "positional_embedding") return {{T + "embeddings.position_embedding.weight"}};
  if (key == "ln_final.weight" || key == "ln_final.bias") return {{T + "final_layer_norm." + key.substr(9)}};

  const std::string R = "transformer.resblocks.";
  if (key.starts_with(R)) {
    const std::string rest = key.substr(R.size());
    const size_t dot = rest.find('.');
    const std::string index = rest.substr(0, dot);
    const bool numeric = !index.empty() && index.size() < 7 && index.find_first_not_of("0123456789") == std::string::npos;
    if (numeric && dot != std::string::npos) {
      const std::string layer = T + "encoder.layers." + index + ".";
      const std::string leaf = rest.substr(dot + 1);
      // nn.MultiheadAttention keeps q, k and v as one [3D, ...] parameter: three row slices.
      if ((leaf == "attn.in_proj_weight" || leaf == "attn.in_proj_bias") && !shape.empty() && shape[0] % 3 == 0) {
        const int64_t d = shape[0] / 3;
        const std::string kind = leaf == "attn.in_proj_weight" ? "weight" : "bias";
        return {{layer + "self_attn.q_proj." + kind, 0, d},
                {layer + "self_attn.k_proj." + kind, d, d},
                {layer + "self_attn.v_proj." + kind, 2 * d, d}};
      }
      static const std::pair<const char*, const char*> renames[] = {
          {"ln_1.", "layer_norm1."},  {"ln_2.", "layer_norm2."},  {"attn.out_proj.", "self_attn.out_proj."},
          {"mlp.c_fc.", "mlp.fc1."}, {"mlp.c_proj.", "mlp.fc2."}};
      for (auto [from, to] : renames)
        if (leaf.starts_with(from)) {
          const std::string param = leaf.substr(std::string(from).size());
          if (param == "weight" || param == "bias") return {{layer + to + param}};
        }
    }
  }
  return {{kOpenClipPrefix + key}};
}

}  // namespace vksd
