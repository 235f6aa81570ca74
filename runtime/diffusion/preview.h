// Latent -> RGB previews: the cheap linear map from a latent to colours (a model's VAE decoder to
// first order), on the CPU (latent_preview, runtime/diffusion/pipeline.h) and on the GPU (LatentPreview),
// bit-identical. A presenting client (the viewer) records LatentPreview into its own frame
// command buffer and copies the RGBA8 texels into a sampled image in the same command buffer,
// so no image goes through the CPU per step. HeatmapPreview does the same for a scalar field
// through a colour map (below).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>
#include <vulkan/vulkan.h>

#include "runtime/io/image_io.h"

namespace vksd {

class Context;
class Buffer;
class PreviewSlots;

// The linear latent -> RGB map of a model (its VAE's colours, to first order):
//   rgb_c = bias_c + sum_l weights[l][c] * latent_l,   RGB in [-1, 1].
// Applied to the latent the UNet sees (VAE posterior x scale_factor). From the model config's
// "preview" section (docs/model-config.md); `vksd fit-preview` fits one for a model.
struct LatentRgbMap {
  int channels = 4;            // latent channels (at most 4 on the GPU)
  std::vector<float> weights;  // [channels][3]
  float bias[3] = {0, 0, 0};
  static LatentRgbMap sd1();   // the widely used SD 1.x coefficients
  static LatentRgbMap sdxl();  // SDXL's VAE (a different latent space): AUTOMATIC1111's table
  // Throws an Error (prefixed with `what`) unless weights has channels x 3 finite values and
  // 1 <= channels <= 4.
  void check(const char* what = "latent RGB map") const;
};

class LatentPreview {
 public:
  static constexpr int kMaxChannels = 4;

  // `slots`: independent input/output pairs. A client with F frames in flight that shows P
  // latents per frame uses slots = F * P, slot = frame * P + k.
  LatentPreview(Context& ctx, int channels, int height, int width, int slots);
  ~LatentPreview();
  LatentPreview(const LatentPreview&) = delete;
  LatentPreview& operator=(const LatentPreview&) = delete;

  int channels() const { return channels_; }
  int height() const { return height_; }
  int width() const { return width_; }
  int slots() const { return slots_; }

  // Writes `latent` [channels, height, width] into the slot's host-visible input and records
  // into cb: a barrier (the slot's output was last read by a transfer, or written by this
  // kernel), the dispatch, and a barrier making the output visible to TRANSFER reads (a
  // vkCmdCopyBufferToImage from output_buffer() at output_offset(slot)). The caller guarantees
  // that the slot's previous submission has completed (frame fences) and records each slot at
  // most once per command buffer (the input is host memory, read when the command runs).
  void record(VkCommandBuffer cb, int slot, const float* latent, const LatentRgbMap& map, float scale = 1.f);

  // The RGBA8 texels of a slot: height x width, row-major, tightly packed (4 bytes each, R
  // first), alpha 255. Offsets are multiples of 256 bytes.
  VkBuffer output_buffer() const;
  VkDeviceSize output_offset(int slot) const;

  // For tests and CPU clients: record (slot 0) + submit_and_wait + download -> an RGB Image of
  // width x height. Not to be mixed with a client's in-flight use of slot 0.
  Image render(const std::vector<float>& latent, const LatentRgbMap& map, float scale = 1.f);

 private:
  void check_args(int slot, const LatentRgbMap& map) const;

  Context& ctx_;
  int channels_, height_, width_, slots_;
  std::unique_ptr<PreviewSlots> slots_impl_;
};

// ---- heatmaps ---------------------------------------------------------------------------------
// A scalar field (one latent channel, an attention map, ...) -> RGBA8 texels through a colour map,
// on the GPU (HeatmapPreview, recorded into the client's command buffer like LatentPreview) and on
// the CPU (heatmap_texel, for references and legends), byte for byte the same.
//
// The rule, per value v:
//   inv = hi > lo ? 1 / (hi - lo) : 0       (on the host, in float)
//   u   = clamp((v - lo) * inv, 0, 1)       (NaN -> 0)
//   rgb = the map's 256-entry table at index floor(u * 255 + 0.5)
//   a   = 255, or with overlay_alpha in [0, 1]: floor((u * overlay_alpha) * 255 + 0.5)
// Every map is 256 8-bit colours, piecewise linear between published key colours.
enum class ColorMap {
  Diverging,  // blue - white - red (ColorBrewer RdBu, reversed): lo dark blue, middle white, hi dark red
  Viridis,    // sequential, perceptually uniform (matplotlib's viridis): dark purple -> yellow
  Gray        // black -> white
};
const char* color_map_name(ColorMap map);  // "diverging", "viridis", "gray"

// The colour of u in [0, 1] (clamped; NaN -> 0): the table entry floor(u * 255 + 0.5).
void heatmap_color(float u, ColorMap map, uint8_t rgb[3]);
// The whole per-texel rule above (what HeatmapPreview computes), for references and legends.
void heatmap_texel(float v, float lo, float hi, ColorMap map, float overlay_alpha, uint8_t rgba[4]);

class HeatmapPreview {
 public:
  // A field of height x width values; `slots` independent input/output pairs (as LatentPreview:
  // F frames in flight x P maps per frame -> slots = F * P, slot = frame * P + k).
  HeatmapPreview(Context& ctx, int height, int width, int slots);
  ~HeatmapPreview();
  HeatmapPreview(const HeatmapPreview&) = delete;
  HeatmapPreview& operator=(const HeatmapPreview&) = delete;

  int height() const { return height_; }
  int width() const { return width_; }
  int slots() const { return slots_; }

  // Writes `values` [height * width] into the slot's host-visible input and records into cb the
  // barrier, the dispatch and the barrier that makes the output visible to TRANSFER reads, with
  // the same contract as LatentPreview::record (the slot's previous submission has completed; at
  // most one record per slot per command buffer). overlay_alpha < 0: opaque; in [0, 1]: alpha
  // grows with u (a map drawn over an image); values above 1 are taken as 1.
  void record(VkCommandBuffer cb, int slot, const float* values, float lo, float hi, ColorMap map,
              float overlay_alpha = -1.f);

  // The RGBA8 texels of a slot: height x width, row-major, tightly packed (R first). Offsets are
  // multiples of 256 bytes.
  VkBuffer output_buffer() const;
  VkDeviceSize output_offset(int slot) const;

  // For tests and CPU clients: record (slot 0) + submit_and_wait + download -> an RGBA Image
  // (channels 4) of width x height. Not to be mixed with a client's in-flight use of slot 0.
  Image render(const std::vector<float>& values, float lo, float hi, ColorMap map, float overlay_alpha = -1.f);

 private:
  Context& ctx_;
  int height_, width_, slots_;
  std::unique_ptr<Buffer> table_;  // colour tables; declared before the slots that view it
  std::unique_ptr<PreviewSlots> slots_impl_;
};

}  // namespace vksd
