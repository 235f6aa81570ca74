#include "runtime/model/sd1_layout.h"

namespace vksd {

std::vector<TensorSpec> sd1_layout(const ModelConfig& c) {
  auto all = unet_layout(c.unet);
  auto v = vae_layout(c.vae);
  all.insert(all.end(), v.begin(), v.end());
  for (const ClipConfig& e : c.text_encoders()) {
    auto t = clip_layout(e);
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

int64_t parameter_count(const std::vector<TensorSpec>& specs) {
  int64_t n = 0;
  for (const auto& s : specs) n += shape_numel(s.shape);
  return n;
}

}  // namespace vksd
