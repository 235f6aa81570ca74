// Kernels: compute pipelines built on demand from SPIR-V embedded at build time.
// A kernel is named by its shader file (shaders/NAME.comp), its specialization constants
// (constant_id 0, 1, ... in order) and the kind of each binding; pipelines are cached in
// memory and in a VkPipelineCache persisted on disk.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>
#include <vulkan/vulkan.h>

namespace vksd {

class Context;

// Embedded SPIR-V (generated at build time from shaders/*.comp).
std::span<const uint32_t> find_shader(std::string_view name);
std::vector<std::string> shader_names();

// How a kernel sees a tensor binding. Tensors are bound as texel buffers: reads through a
// uniform texel buffer (`samplerBuffer`, fast on every driver and not limited by
// maxStorageBufferRange), writes through a storage texel buffer (`imageBuffer`). The view's
// format (f32 or f16, 1 or 4 lanes) converts on the fly, so shaders are dtype-agnostic.
enum class Access : uint8_t { Read, Write };

constexpr uint32_t kPushConstantBytes = 128;  // the minimum every Vulkan device guarantees

struct Pipeline {
  VkPipeline pipeline = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
};

class Kernels {
 public:
  explicit Kernels(Context& ctx);
  ~Kernels();
  const Pipeline& get(const std::string& name, const std::vector<uint32_t>& spec, const std::vector<Access>& bindings);
  size_t pipeline_count() const { return cache_.size(); }

 private:
  Context& ctx_;
  VkPipelineCache cache_handle_ = VK_NULL_HANDLE;
  std::string cache_path_;
  std::map<std::tuple<std::string, std::vector<uint32_t>, std::vector<Access>>, Pipeline> cache_;
};

}  // namespace vksd
