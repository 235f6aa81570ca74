#include "runtime/preview.h"

#include <cmath>
#include <cstring>
#include <string>

#include "runtime/context.h"
#include "runtime/error.h"
#include "runtime/kernel.h"
#include "runtime/memory.h"

namespace vksd {

LatentRgbMap LatentRgbMap::sd1() {
  // Rows: latent channels; columns: R, G, B (the community's least-squares fit to SD 1.x's VAE).
  LatentRgbMap m;
  m.channels = 4;
  m.weights = {0.298f, 0.207f, 0.208f, 0.187f, 0.286f, 0.173f, -0.158f, 0.189f, 0.264f, -0.184f, -0.271f, -0.473f};
  return m;
}

void LatentRgbMap::check(const char* what) const {
  if (channels < 1 || channels > LatentPreview::kMaxChannels)
    fail(std::string(what) + ": " + std::to_string(channels) + " latent channels (1 to " +
         std::to_string(LatentPreview::kMaxChannels) + " supported)");
  if (weights.size() != (size_t)channels * 3)
    fail(std::string(what) + ": " + std::to_string(weights.size()) + " weights for " + std::to_string(channels) +
         " channels (need channels x 3)");
  for (float w : weights)
    if (!std::isfinite(w)) fail(std::string(what) + ": a weight is not finite");
  for (float b : bias)
    if (!std::isfinite(b)) fail(std::string(what) + ": a bias is not finite");
}

namespace {

// shaders/latent_rgb.comp's push constants.
struct Push {
  uint32_t channels, height, width;
  float scale;
  float m[12];  // m[c * 4 + l]
  float bias[3];
};
static_assert(sizeof(Push) == 76 && sizeof(Push) <= kPushConstantBytes);

constexpr uint32_t kGroup = 64;  // local_size_x

}  // namespace

LatentPreview::LatentPreview(Context& ctx, int channels, int height, int width, int slots)
    : ctx_(ctx), channels_(channels), height_(height), width_(width), slots_(slots) {
  if (channels < 1 || channels > kMaxChannels)
    fail("LatentPreview: " + std::to_string(channels) + " latent channels (1 to " + std::to_string(kMaxChannels) +
         " supported)");
  if (height < 1 || width < 1 || slots < 1)
    fail("LatentPreview: bad geometry " + std::to_string(height) + "x" + std::to_string(width) + ", " +
         std::to_string(slots) + " slots");
  const uint64_t plane = (uint64_t)height * width;
  const auto& info = ctx.info();
  if (plane * channels > info.max_texel_buffer_elements)
    fail("LatentPreview: a " + std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width) +
         " latent exceeds maxTexelBufferElements (" + std::to_string(info.max_texel_buffer_elements) + ")");
  if ((plane + kGroup - 1) / kGroup > info.max_workgroup_count[0])
    fail("LatentPreview: " + std::to_string(height) + "x" + std::to_string(width) + " latent pixels need more workgroups than the device allows");
  if (!ctx.format_supported(VK_FORMAT_R32_SFLOAT, VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT))
    fail("LatentPreview: the device cannot read R32_SFLOAT uniform texel buffers");
  if (!ctx.format_supported(VK_FORMAT_R8G8B8A8_UNORM, VK_FORMAT_FEATURE_STORAGE_TEXEL_BUFFER_BIT))
    fail("LatentPreview: the device cannot write R8G8B8A8_UNORM storage texel buffers");

  VkDevice dev = ctx.device();
  in_stride_ = align_up(plane * channels * sizeof(float), kTensorAlignment);
  out_stride_ = align_up(plane * 4, kTensorAlignment);
  input_ = std::make_unique<Buffer>(ctx, in_stride_ * slots, Buffer::Use::HostTexel, "preview latents");
  output_ = std::make_unique<Buffer>(ctx, out_stride_ * slots, Buffer::Use::Device, "preview rgba");

  const Pipeline& p = ctx.kernels().get("latent_rgb", {}, {Access::Read, Access::Write});
  pipeline_ = p.pipeline;
  layout_ = p.layout;

  VkDescriptorPoolSize sizes[2] = {{VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER, (uint32_t)slots},
                                   {VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER, (uint32_t)slots}};
  VkDescriptorPoolCreateInfo pci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pci.maxSets = (uint32_t)slots;
  pci.poolSizeCount = 2;
  pci.pPoolSizes = sizes;
  vk_check(vkCreateDescriptorPool(dev, &pci, nullptr, &pool_), "vkCreateDescriptorPool (preview)");

  std::vector<VkDescriptorSetLayout> layouts((size_t)slots, p.set_layout);
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = pool_;
  ai.descriptorSetCount = (uint32_t)slots;
  ai.pSetLayouts = layouts.data();
  sets_.resize((size_t)slots);
  vk_check(vkAllocateDescriptorSets(dev, &ai, sets_.data()), "vkAllocateDescriptorSets (preview)");

  for (int s = 0; s < slots; ++s) {
    VkBufferViewCreateInfo vi{VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO};
    vi.buffer = input_->handle();
    vi.format = VK_FORMAT_R32_SFLOAT;
    vi.offset = in_stride_ * s;
    vi.range = plane * channels * sizeof(float);
    VkBufferView in_view, out_view;
    vk_check(vkCreateBufferView(dev, &vi, nullptr, &in_view), "vkCreateBufferView (preview input)");
    views_.push_back(in_view);
    vi.buffer = output_->handle();
    vi.format = VK_FORMAT_R8G8B8A8_UNORM;
    vi.offset = out_stride_ * s;
    vi.range = plane * 4;
    vk_check(vkCreateBufferView(dev, &vi, nullptr, &out_view), "vkCreateBufferView (preview output)");
    views_.push_back(out_view);

    VkWriteDescriptorSet w[2]{};
    for (int b = 0; b < 2; ++b) {
      w[b].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
      w[b].dstSet = sets_[(size_t)s];
      w[b].dstBinding = (uint32_t)b;
      w[b].descriptorCount = 1;
    }
    w[0].descriptorType = VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER;
    w[0].pTexelBufferView = &in_view;
    w[1].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER;
    w[1].pTexelBufferView = &out_view;
    vkUpdateDescriptorSets(dev, 2, w, 0, nullptr);
  }
}

LatentPreview::~LatentPreview() {
  VkDevice dev = ctx_.device();
  for (VkBufferView v : views_) vkDestroyBufferView(dev, v, nullptr);
  if (pool_) vkDestroyDescriptorPool(dev, pool_, nullptr);  // frees the sets
}

VkBuffer LatentPreview::output_buffer() const { return output_->handle(); }

VkDeviceSize LatentPreview::output_offset(int slot) const {
  if (slot < 0 || slot >= slots_) fail("LatentPreview: slot " + std::to_string(slot) + " of " + std::to_string(slots_));
  return out_stride_ * slot;
}

void LatentPreview::check_args(int slot, const LatentRgbMap& map) const {
  if (slot < 0 || slot >= slots_) fail("LatentPreview: slot " + std::to_string(slot) + " of " + std::to_string(slots_));
  map.check("LatentPreview");
  if (map.channels != channels_)
    fail("LatentPreview: the map is for " + std::to_string(map.channels) + " latent channels, the preview for " +
         std::to_string(channels_));
}

void LatentPreview::record(VkCommandBuffer cb, int slot, const float* latent, const LatentRgbMap& map, float scale) {
  check_args(slot, map);
  const size_t plane = (size_t)height_ * width_;
  std::memcpy((char*)input_->mapped() + in_stride_ * slot, latent, plane * channels_ * sizeof(float));

  Push pc{};
  pc.channels = (uint32_t)channels_;
  pc.height = (uint32_t)height_;
  pc.width = (uint32_t)width_;
  pc.scale = scale;
  for (int c = 0; c < 3; ++c) {
    for (int l = 0; l < channels_; ++l) pc.m[c * 4 + l] = map.weights[(size_t)l * 3 + c];
    pc.bias[c] = map.bias[c];
  }

  VkBufferMemoryBarrier b{VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER};
  b.srcQueueFamilyIndex = b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  b.buffer = output_->handle();
  b.offset = out_stride_ * slot;
  b.size = plane * 4;
  // Before: the slot's output was last read by a copy (write-after-read) or written by this
  // kernel in an earlier frame (write-after-write).
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                       VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0, nullptr, 1, &b, 0, nullptr);

  vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline_);
  vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout_, 0, 1, &sets_[(size_t)slot], 0, nullptr);
  vkCmdPushConstants(cb, layout_, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof pc, &pc);
  vkCmdDispatch(cb, (uint32_t)((plane + kGroup - 1) / kGroup), 1, 1);

  // After: visible to the copy into the client's image.
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
  vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, nullptr, 1, &b,
                       0, nullptr);
}

Image LatentPreview::render(const std::vector<float>& latent, const LatentRgbMap& map, float scale) {
  const size_t plane = (size_t)height_ * width_;
  if (latent.size() != plane * channels_)
    fail("LatentPreview::render: latent has " + std::to_string(latent.size()) + " values, expected " +
         std::to_string(channels_) + "x" + std::to_string(height_) + "x" + std::to_string(width_));
  check_args(0, map);  // before a command buffer is begun
  VkCommandBuffer cb = ctx_.begin_commands();
  record(cb, 0, latent.data(), map, scale);
  ctx_.submit_and_wait(cb);
  std::vector<uint8_t> rgba(plane * 4);
  download_bytes(ctx_, output_->handle(), output_offset(0), rgba.data(), rgba.size());
  Image img(width_, height_, 3);
  for (size_t i = 0; i < plane; ++i) std::memcpy(&img.pixels[i * 3], &rgba[i * 4], 3);
  return img;
}

}  // namespace vksd
