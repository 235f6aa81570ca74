// Context: the Vulkan instance, the chosen device and its queue, and what we learnt about it.
// One Context per process is typical; everything else (buffers, kernels, graphs) hangs off it.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <map>
#include <string>
#include <thread>
#include <vector>
#include <vulkan/vulkan.h>

#include "runtime/gpu/device_profile.h"
#include "runtime/gpu/matrix_unit.h"
#include "runtime/gpu/dtype.h"

namespace vksd {

struct ContextOptions {
  // Khronos validation layer with synchronization validation. Default: env VKSD_VALIDATION=1.
  bool validation = false;
  // Device to use: an index from `vksd devices` or a substring of its name. Default: env
  // VKSD_DEVICE, else the best device (discrete > integrated > virtual > CPU).
  std::string device;
  // Store activations and weights in fp16 when the device supports it (fp32 accumulation).
  bool prefer_fp16 = true;
  // Where the VkPipelineCache is persisted; empty = $XDG_CACHE_HOME/vksd or ~/.cache/vksd.
  std::string pipeline_cache_dir;
  // For a presenting client (the viewer): instance extensions its window system needs (e.g.
  // from glfwGetRequiredInstanceExtensions); the device then also enables VK_KHR_swapchain.
  std::vector<std::string> instance_extensions;
  static ContextOptions from_env();
};

struct DeviceInfo {
  uint32_t index = 0;
  std::string name, vendor, driver, type;
  uint32_t api_version = 0;
  uint64_t max_storage_buffer_range = 0;
  uint64_t max_memory_allocation = 0;
  uint64_t max_buffer_size = 0;
  uint64_t max_texel_buffer_elements = 0;
  uint64_t min_texel_offset_alignment = 0;
  uint32_t max_push_constants = 0;
  uint32_t max_shared_memory = 0;
  uint32_t max_workgroup_invocations = 0;
  uint32_t max_workgroup_count[3] = {0, 0, 0};
  uint32_t subgroup_size = 0;
  bool fp16 = false;               // shaderFloat16 + fp16 texel formats usable for load/store
  bool int8 = false;               // shaderInt8
  uint32_t max_subgroup_size = 0;  // where the driver may vary it (subgroup size control), else subgroup_size
  MatrixUnitInfo matrix_unit;      // cooperative-matrix support usable by vksd's kernel
  bool timestamps = false;
  double timestamp_period_ns = 1.0;
  std::vector<std::pair<uint64_t, bool>> heaps;  // size, device-local
  int type_rank = 0;  // higher is preferred
};

class Kernels;
class StagingRing;

class Context {
 public:
  explicit Context(const ContextOptions& opts = ContextOptions::from_env());
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  static std::vector<DeviceInfo> list_devices();

  VkInstance instance() const { return instance_; }
  VkPhysicalDevice physical() const { return physical_; }
  VkDevice device() const { return device_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }
  const DeviceInfo& info() const { return info_; }
  // Kernel variants for this device, chosen once with the environment's overrides
  // (device_profile.h); ops read this, never getenv or the device type.
  const DeviceProfile& profile() const { return profile_; }
  // Replace it (tests and benchmarks comparing variants); graphs built afterwards see it.
  void set_profile(const DeviceProfile& p) { profile_ = p; }
  const ContextOptions& options() const { return opts_; }
  // Storage type for activations/weights: F16 when preferred and supported.
  DType compute_dtype() const { return (opts_.prefer_fp16 && info_.fp16) ? DType::F16 : DType::F32; }

  uint32_t memory_type(uint32_t type_bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid = 0) const;
  bool format_supported(VkFormat f, VkFormatFeatureFlags buffer_features) const;

  // One-shot command buffers for uploads, readbacks and tests. Safe from any thread: each
  // thread records from its own command pool and waits on its own fence.
  VkCommandBuffer begin_commands();
  void submit_and_wait(VkCommandBuffer cb);

  // The queue is shared by every thread (the generation thread computes while the viewer's
  // render thread draws and presents); Vulkan requires external synchronisation of a VkQueue,
  // so every vkQueueSubmit / vkQueuePresentKHR / vkQueueWaitIdle goes through these.
  void submit(const VkSubmitInfo& si, VkFence fence);
  VkResult present(const VkPresentInfoKHR& pi);  // needs ContextOptions::instance_extensions
  void wait_idle();                              // vkDeviceWaitIdle under the queue lock

  // Device memory in use by category: the first word of each Buffer's purpose ("weights",
  // "activations", "staging", "preview", ...). Clients add their own (the viewer's textures).
  void track_memory(const std::string& category, int64_t bytes);
  std::map<std::string, uint64_t> memory_in_use() const;
  // All categories together: now, and the most at any moment since the Context was made or
  // since reset_memory_peak() (the measured peak device memory of a run: `vksd bench`, info).
  uint64_t memory_total() const;
  uint64_t memory_peak() const;
  void reset_memory_peak();  // peak := what is in use now
  // A second peak for one stage of a run (text, UNet, VAE: the per-stage peaks of --verbose),
  // restarted by begin_memory_stage() without touching the run's peak above.
  void begin_memory_stage();
  uint64_t memory_stage_peak() const;

  Kernels& kernels() { return *kernels_; }
  // The persistent staging slots every upload and download goes through (staging.h).
  StagingRing& staging() { return *staging_; }

  // Validation messages (warnings and errors) seen so far; tests require zero.
  uint64_t validation_messages() const { return validation_messages_.load(); }
  // All validation messages of this process, including those reported while a Context was
  // being destroyed (leaked objects).
  static uint64_t process_validation_messages();
  std::string last_validation_message() const;
  void note_validation_message(const char* msg);

 private:
  ContextOptions opts_;
  DeviceInfo info_;
  DeviceProfile profile_;
  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  // Per-thread one-shot command pool and fence (a VkCommandPool must not be used by two
  // threads at once).
  struct ThreadCommands {
    VkCommandPool pool = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
  };
  ThreadCommands& thread_commands();
  std::mutex pools_mutex_;
  std::map<std::thread::id, ThreadCommands> pools_;
  std::mutex queue_mutex_;
  mutable std::mutex memory_mutex_;
  std::map<std::string, uint64_t> memory_;
  uint64_t memory_total_ = 0, memory_peak_ = 0, memory_stage_peak_ = 0;
  VkPhysicalDeviceMemoryProperties mem_props_{};
  std::unique_ptr<Kernels> kernels_;
  std::unique_ptr<StagingRing> staging_;
  std::atomic<uint64_t> validation_messages_{0};
  mutable std::mutex msg_mutex_;
  std::string last_message_;
};

}  // namespace vksd
