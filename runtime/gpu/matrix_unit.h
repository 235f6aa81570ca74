// The GPU's matrix unit (NVIDIA tensor cores, AMD WMMA, Intel XMX) as Vulkan exposes it:
// VK_KHR_cooperative_matrix on every vendor's recent drivers, VK_NV_cooperative_matrix on
// NVIDIA's older ones. vksd's matrix-unit kernel (shaders/matmul_coop.comp) multiplies fp16
// tiles into fp32 accumulators at subgroup scope; this file finds the tile shapes a driver
// offers for that and the device features the kernel needs enabled.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include <vulkan/vulkan.h>

namespace vksd {

// Which build of the matrix-unit kernel runs: none (the scalar kernels), the NV or KHR
// extension's, or Emulated — the same kernel with plain loops instead of the matrix
// instructions, so that everything around them is tested where no matrix unit exists.
enum class MatrixUnitApi : uint8_t { None, Emulated, NV, KHR };
const char* matrix_unit_name(MatrixUnitApi api);  // "none", "emulated", "NV", "KHR"
// The build of a matrix-unit kernel for `api`: "matmul_coop" -> matmul_coop (NV),
// matmul_coop_khr, matmul_coop_emulated; "" for None.
std::string matrix_unit_kernel(const std::string& base, MatrixUnitApi api);

// One tile shape C[M, N] += A[M, K] · B[K, N].
struct MatrixShape {
  uint32_t m = 0, n = 0, k = 0;
  bool operator==(const MatrixShape&) const = default;
};

// What a physical device offers for vksd's kernel: fp16 A and B, fp32 C and result,
// subgroup scope, and the features the kernel's SPIR-V needs (shaderFloat16, the Vulkan
// memory model). `api` is KHR where the driver has it and this build has its kernel, else NV,
// else None.
struct MatrixUnitInfo {
  MatrixUnitApi api = MatrixUnitApi::None;
  std::vector<MatrixShape> shapes;
};
MatrixUnitInfo query_matrix_unit(VkInstance instance, VkPhysicalDevice pd);

// The shape vksd's kernel uses from those offered: 16x16x16 where offered (every vendor's
// common fp16 shape), else the offered shape with the fewest elements whose sides are
// 8..32; {0,0,0} when none fits.
MatrixShape choose_matrix_shape(const std::vector<MatrixShape>& offered);

// Features to chain into VkDeviceCreateInfo for `api` (NV/KHR), and the extensions to enable.
// The structures live in this object, which must outlive vkCreateDevice.
class MatrixUnitEnable {
 public:
  // Links its feature structures in front of *pnext (the chain's head).
  MatrixUnitEnable(MatrixUnitApi api, void** pnext, std::vector<const char*>& extensions);

 private:
  VkPhysicalDeviceVulkanMemoryModelFeatures memory_model_{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES};
  VkPhysicalDeviceCooperativeMatrixFeaturesNV nv_{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  // VkPhysicalDeviceCooperativeMatrixFeaturesKHR, laid out here: Debian bookworm's Vulkan
  // headers (1.3.236) predate VK_KHR_cooperative_matrix (1.3.255).
  struct KhrFeatures {
    VkStructureType sType;
    void* pNext;
    VkBool32 cooperativeMatrix;
    VkBool32 cooperativeMatrixRobustBufferAccess;
  } khr_{};
};

}  // namespace vksd
