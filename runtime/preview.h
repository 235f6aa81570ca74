// Latent -> RGB previews: the cheap linear map from a latent to colours (a model's VAE decoder to
// first order), on the CPU (latent_preview, runtime/pipeline.h) and on the GPU (LatentPreview),
// bit-identical. A presenting client (the viewer) records LatentPreview into its own frame
// command buffer and copies the RGBA8 texels into a sampled image in the same command buffer,
// so no image goes through the CPU per step.
#pragma once
#include <memory>
#include <vector>
#include <vulkan/vulkan.h>

#include "runtime/image_io.h"

namespace vksd {

class Context;
class Buffer;

// The linear latent -> RGB map of a model (its VAE's colours, to first order):
//   rgb_c = bias_c + sum_l weights[l][c] * latent_l,   RGB in [-1, 1].
// Applied to the latent the UNet sees (VAE posterior x scale_factor). From the model config's
// "preview" section (docs/model-config.md); `vksd fit-preview` fits one for a model.
struct LatentRgbMap {
  int channels = 4;            // latent channels (at most 4 on the GPU)
  std::vector<float> weights;  // [channels][3]
  float bias[3] = {0, 0, 0};
  static LatentRgbMap sd1();   // the widely used SD 1.x coefficients
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
  VkDeviceSize in_stride_ = 0, out_stride_ = 0;
  std::unique_ptr<Buffer> input_, output_;
  VkDescriptorPool pool_ = VK_NULL_HANDLE;
  std::vector<VkDescriptorSet> sets_;
  std::vector<VkBufferView> views_;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
};

}  // namespace vksd
