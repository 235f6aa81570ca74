// A test hook that makes one Vulkan call fail with a chosen result, so that out-of-memory and
// lost-device handling (the message naming the operation, a clean exit, no leaked objects) can
// be tested on any device. Off unless the environment sets
//   VKSD_TEST_FAULT=SITE:N:RESULT
// SITE alloc (device memory allocations), transfer (waiting for a one-time upload or download)
// or graph (waiting for a graph run: text encoder, UNet step, VAE), N the 1-based count of
// that call in the process, RESULT oom
// (VK_ERROR_OUT_OF_DEVICE_MEMORY) or device_lost (VK_ERROR_DEVICE_LOST). The Nth call then
// returns RESULT instead of reaching the driver; every other call is untouched.
//   VKSD_TEST_FAULT=matrix_unit
// instead makes the matrix-unit GEMM (ops/matmul_coop.cpp) compute a wrong product — it drops
// the last term of every dot product, as a driver with a broken matrix unit might — so that
// ops::check_matrix_unit's fallback can be tested where the matrix unit is emulated.
#pragma once
#include <vulkan/vulkan.h>

namespace vksd {

enum class FaultSite { Alloc, Transfer, Graph };

// VK_SUCCESS, or the injected result when this call is the chosen one.
VkResult injected_fault(FaultSite site);
// Whether VKSD_TEST_FAULT=matrix_unit is set.
bool injected_matrix_unit_fault();

}  // namespace vksd
