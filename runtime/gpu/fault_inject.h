// A test hook that makes one Vulkan call fail with a chosen result, so that out-of-memory and
// lost-device handling (the message naming the operation, a clean exit, no leaked objects) can
// be tested on any device. Off unless the environment sets
//   VKSD_TEST_FAULT=SITE:N:RESULT
// SITE alloc (device memory allocations), transfer (waiting for a one-time upload or download)
// or graph (waiting for a graph run: text encoder, UNet step, VAE), N the 1-based count of
// that call in the process, RESULT oom
// (VK_ERROR_OUT_OF_DEVICE_MEMORY) or device_lost (VK_ERROR_DEVICE_LOST). The Nth call then
// returns RESULT instead of reaching the driver; every other call is untouched.
#pragma once
#include <vulkan/vulkan.h>

namespace vksd {

enum class FaultSite { Alloc, Transfer, Graph };

// VK_SUCCESS, or the injected result when this call is the chosen one.
VkResult injected_fault(FaultSite site);

}  // namespace vksd
