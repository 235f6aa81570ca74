// SDXL's micro-conditioning (sgm ConcatTimestepEmbedderND(256) on original_size_as_tuple,
// crop_coords_top_left and target_size_as_tuple) and the UNet's vector input y built from it.
//
//   fourier(v)   = [cos(v * f_0), ..., cos(v * f_127), sin(v * f_0), ..., sin(v * f_127)],
//                  f_i = exp(-ln(10000) * i / 128)                  (timestep_embedding(v, 256))
//   emb(pair)    = cat(fourier(first), fourier(second))             (512 per pair)
//   y            = cat(pooled text, emb(original h, w), emb(crop top, left), emb(target h, w))
//                  = 1280 + 3 x 512 = 2816 (adm_in_channels) for SDXL base
//
// Computed on the host: it is 1.5 K numbers per image, and the arguments reach ~1100 rad where
// GPU sin/cos are not accurate (Vulkan only bounds their error on [-pi, pi]). The arithmetic
// follows the reference's float32 steps (frequency and argument rounded to f32 as PyTorch does),
// with sin/cos of that f32 argument evaluated in double and rounded once.
#pragma once
#include <vector>

namespace vksd {

// The three (first, second) pairs, as sgm's batch keys hold them: sizes as (height, width),
// the crop as (top, left). SDXL's usual choice for a W x H image: original = target = (H, W),
// crop (0, 0).
struct SdxlSizeConditioning {
  int original_h = 1024, original_w = 1024;
  int crop_top = 0, crop_left = 0;
  int target_h = 1024, target_w = 1024;
};

struct GenerateParams;
// What a run's parameters ask for (GenerateParams::original_width ...; 0 = the image size, so
// a run that sets none gets SDXL's usual choice above).
SdxlSizeConditioning size_conditioning(const GenerateParams& p);

inline constexpr int kSdxlSizeEmbedDim = 256;  // per number; 512 per pair

// timestep_embedding(v, dim, max_period) of one value (dim even): [cos half, sin half].
std::vector<float> fourier_embedding(double value, int dim = kSdxlSizeEmbedDim, double max_period = 10000.0);
// ConcatTimestepEmbedderND: cat(fourier(a), fourier(b)) -> 2 * dim.
std::vector<float> pair_embedding(double a, double b, int dim = kSdxlSizeEmbedDim);
// emb(original) ++ emb(crop) ++ emb(target): 6 * dim values (1536).
std::vector<float> sdxl_size_embedding(const SdxlSizeConditioning& s, int dim = kSdxlSizeEmbedDim);

// y for `batch` prompts: each row is pooled[b] (pooled_dim values) followed by the size
// embedding (the same for every row). pooled: batch * pooled_dim values.
std::vector<float> sdxl_vector_y(const std::vector<float>& pooled, int batch, int pooled_dim,
                                 const SdxlSizeConditioning& s, int dim = kSdxlSizeEmbedDim);

}  // namespace vksd
