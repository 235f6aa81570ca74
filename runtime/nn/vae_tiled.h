// Tiled VAE decode and encode: low peak memory for large images.
//
// The untiled VAE's activations grow with the image (SD 1.5's decoder keeps several
// 128 x H x W and 256 x H x W tensors at full resolution). The expensive part is where the
// resolution is high: the decoder's up blocks and the encoder's down blocks. Those run in tiles
// through ONE graph built and compiled for the tile size and replayed per tile; the rest (the
// mid block with its attention over all pixels, at latent resolution, 8x smaller per side for
// SD) runs whole, so attention stays exact. See VaePart in nn/vae.h for the split.
//
// Geometry (per axis, in latent pixels): a tile of `tile` pixels, neighbours overlapping by at
// least `overlap`. The tile count is the fewest with that overlap; the tiles are then spread
// evenly from the first edge to the last (edge tiles lie inside the image, every tile has the
// same size, and the actual overlaps are >= `overlap`). An axis not longer than `tile` is one
// tile spanning it; an image not larger than a tile in either axis runs untiled (the same ops
// as VaeDecoder/VaeEncoder, so exactly the untiled result).
//
// Blending: each output pixel is a weighted sum of the tiles covering it. Along an axis a tile's
// weight ramps linearly from ~0 at its edge to 1 across the overlap with its neighbour (and the
// neighbour's ramps the other way), so weights sum to 1 and a tile's edge pixels, the ones
// hurt by the convolutions' zero padding at the tile border, count least. 2-D weights are the
// product of the per-axis ones. The decoder blends image tiles, the encoder blends the down
// blocks' output tiles at latent resolution.
//
// GroupNorm: normalising each tile with its own statistics (mean and variance of the tile
// instead of the image) changes the output a lot when tiles differ in content. So by default
// the statistics are merged over all tiles: a first pass over the tiles normalises with each
// tile's own statistics and records them per GroupNorm; the records are merged (weighted by
// the share of the image each tile blends into, Chan's formula); the next pass normalises every
// tile with the merged statistics, records its own again, and so on; the last pass produces the
// output. Each pass brings every GroupNorm's input closer to what it is untiled. What remains is
// the convolutions' zero padding at tile edges, faded out by the blend (measured in
// tests/test_vae_tiled.cpp).
#pragma once
#include <memory>
#include <vector>

#include "runtime/nn/vae.h"

namespace vksd::nn {

// Tile geometry, in latent pixels (the image tile is downsample_factor times larger).
struct VaeTiles {
  int tile = 64;     // SD 1.x: 64 latent = 512 image pixels, the size SD's VAE was trained at
  int overlap = 16;  // minimum overlap of neighbouring tiles
  // Passes over the tiles that only gather GroupNorm statistics before the output pass:
  // 0 = each tile normalised with its own (one pass, least exact); 1 = merged from per-tile
  // statistics; each further pass re-measures them under the merged ones.
  int stat_passes = 2;
};

// First pixel of each tile along an axis of `size` pixels (tiles of min(tile, size) pixels).
std::vector<int> tile_starts(int size, int tile, int overlap);

// Blend weights along one axis: result[i][k] is the weight of tile i's pixel k (tiles of
// `tile` pixels at `starts`, an axis of `size` pixels). For every pixel the weights of the
// tiles covering it sum to 1.
std::vector<std::vector<float>> tile_weights(const std::vector<int>& starts, int tile, int size);

class TiledVaeDecoder {
 public:
  TiledVaeDecoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch, int latent_h,
                  int latent_w, VaeTiles tiles, NetOptions opts = {});
  ~TiledVaeDecoder();
  // As VaeDecoder::decode: z [batch, embed_dim, h, w] -> image [batch, out_channels, H, W].
  std::vector<float> decode(const std::vector<float>& z);
  // Activation arenas of the graphs (the peak device memory besides the weights): the
  // whole-latent head plus the one tile graph.
  VkDeviceSize peak_bytes() const;
  int tile_count() const { return (int)(ys_.size() * xs_.size()); }
  bool tiled() const { return tile_count() > 1; }

 private:
  VaeConfig cfg_;
  VaeTiles tiles_;
  int batch_, h_, w_, th_, tw_;
  std::vector<int> ys_, xs_;                 // tile starts, latent pixels
  std::vector<std::vector<float>> wy_, wx_;  // blend weights, image pixels
  std::unique_ptr<VaePartNet> head_, tail_;  // tail_: tile-sized (whole-latent when untiled)
};

class TiledVaeEncoder {
 public:
  // image_h, image_w: multiples of the downsample factor; `tiles` in latent pixels.
  TiledVaeEncoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch, int image_h,
                  int image_w, VaeTiles tiles, NetOptions opts = {});
  ~TiledVaeEncoder();
  // As VaeEncoder::encode.
  VaeEncoder::Posterior encode(const std::vector<float>& image);
  // The one tile graph plus the whole-latent tail.
  VkDeviceSize peak_bytes() const;
  int tile_count() const { return (int)(ys_.size() * xs_.size()); }
  bool tiled() const { return tile_count() > 1; }

 private:
  VaeConfig cfg_;
  VaeTiles tiles_;
  int batch_, h_, w_, th_, tw_;              // latent size and latent tile size
  std::vector<int> ys_, xs_;                 // tile starts, latent pixels
  std::vector<std::vector<float>> wy_, wx_;  // blend weights, latent pixels
  std::unique_ptr<VaePartNet> head_, tail_;  // head_: tile-sized (whole-image when untiled)
};

}  // namespace vksd::nn
