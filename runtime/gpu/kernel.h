// Kernels: compute pipelines built on demand from SPIR-V embedded at build time.
// A kernel is named by its shader file (shaders/NAME.comp), its specialization constants
// (constant_id 0, 1, ... in order) and the kind of each binding; pipelines are cached in
// memory and in a VkPipelineCache persisted on disk.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
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

// A pipeline's identity: shader name, specialization constants, binding kinds.
using KernelKey = std::tuple<std::string, std::vector<uint32_t>, std::vector<Access>>;

// Where pipeline creation time went (start-up: `vksd bench`, `generate --verbose`).
struct KernelStats {
  size_t pipelines = 0;         // created so far
  double create_seconds = 0;    // wall time spent creating them (summed over threads)
  double prepare_seconds = 0;   // wall time of prepare() calls (parallel creation)
  std::map<std::string, std::pair<int, double>> by_shader;  // shader -> (pipelines, create seconds)
};

class Kernels {
 public:
  explicit Kernels(Context& ctx);
  ~Kernels();
  // Thread-safe. A pipeline is created on first use and kept for the Context's lifetime.
  const Pipeline& get(const std::string& name, const std::vector<uint32_t>& spec, const std::vector<Access>& bindings);
  // Create every missing pipeline of `keys` now, on up to hardware_concurrency() threads:
  // pipeline creation is CPU work in the driver (SPIR-V -> its IR -> machine code) that a
  // software driver like lavapipe cannot cache, so a network's compile is dominated by it and
  // scales with cores. Graph::compile calls it with all of its dispatches' keys.
  void prepare(const std::vector<KernelKey>& keys);
  size_t pipeline_count() const;
  KernelStats stats() const;

 private:
  Pipeline create(const KernelKey& key) const;

  Context& ctx_;
  VkPipelineCache cache_handle_ = VK_NULL_HANDLE;
  std::string cache_path_;
  mutable std::mutex mutex_;
  std::map<KernelKey, Pipeline> cache_;
  KernelStats stats_;
};

}  // namespace vksd
