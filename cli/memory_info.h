// `vksd info`: in which precision each network runs, and the device memory a generation at the
// model's own size needs (estimate per stage, all resident and with --lowvram + tiled VAE).
#pragma once
#include <cstdint>

namespace vksd {
struct ModelConfig;
}

namespace vksd::cli {

struct NetBytes {
  uint64_t text = 0, unet = 0, vae = 0;  // fp16 weights on the device (vae: the decoder, text to image)
};

void print_precision_and_memory(const ModelConfig& cfg, const NetBytes& fp16_weights);

}  // namespace vksd::cli
