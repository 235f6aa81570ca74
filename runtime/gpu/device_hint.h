// What a user can change when a run does not fit the device: appended to every message about a
// device limit or device memory, and to out-of-memory / device-lost results of submissions.
#pragma once
#include <string>
#include <vulkan/vulkan.h>

namespace vksd {

inline constexpr const char* kDeviceLimitHint =
    "; this image is too large for the device: use a smaller width/height, VAE tiling (--vae-tiling) "
    "or --lowvram";

// The meaning of a result a long submission may end with, "" for others.
inline std::string vk_result_advice(VkResult r) {
  if (r == VK_ERROR_DEVICE_LOST)
    return " (the GPU stopped responding: a driver reset, a timeout or a hardware fault; the run cannot continue)";
  if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
    return std::string(" (out of memory") + kDeviceLimitHint + ")";
  return "";
}

}  // namespace vksd
