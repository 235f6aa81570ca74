#include "runtime/gpu/matrix_unit.h"

#include <cstring>

#include "runtime/gpu/kernel.h"

namespace vksd {
namespace {

// VK_KHR_cooperative_matrix, from the Vulkan registry (absent from bookworm's 1.3.236 headers).
constexpr VkStructureType kKhrFeaturesType = (VkStructureType)1000506000;
constexpr VkStructureType kKhrPropertiesType = (VkStructureType)1000506001;
struct KhrProperties {
  VkStructureType sType;
  void* pNext;
  uint32_t MSize, NSize, KSize;
  uint32_t AType, BType, CType, ResultType;  // VkComponentTypeKHR: same values as the NV enum
  VkBool32 saturatingAccumulation;
  uint32_t scope;  // VkScopeKHR: same values as the NV enum
};
using KhrQuery = VkResult(VKAPI_PTR*)(VkPhysicalDevice, uint32_t*, KhrProperties*);

bool has_extension(VkPhysicalDevice pd, const char* name) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> exts(n);
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, exts.data());
  for (auto& e : exts)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

bool fp16_into_fp32(uint32_t a, uint32_t b, uint32_t c, uint32_t result, uint32_t scope) {
  return a == VK_COMPONENT_TYPE_FLOAT16_NV && b == VK_COMPONENT_TYPE_FLOAT16_NV && c == VK_COMPONENT_TYPE_FLOAT32_NV &&
         result == VK_COMPONENT_TYPE_FLOAT32_NV && scope == VK_SCOPE_SUBGROUP_NV;
}

std::vector<MatrixShape> khr_shapes(VkInstance instance, VkPhysicalDevice pd) {
  auto query = (KhrQuery)vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
  std::vector<MatrixShape> out;
  uint32_t n = 0;
  if (!query || query(pd, &n, nullptr) != VK_SUCCESS) return out;
  std::vector<KhrProperties> props(n, KhrProperties{kKhrPropertiesType, nullptr, 0, 0, 0, 0, 0, 0, 0, VK_FALSE, 0});
  if (query(pd, &n, props.data()) != VK_SUCCESS) return out;
  for (const KhrProperties& p : props)
    if (fp16_into_fp32(p.AType, p.BType, p.CType, p.ResultType, p.scope) && !p.saturatingAccumulation)
      out.push_back({p.MSize, p.NSize, p.KSize});
  return out;
}

std::vector<MatrixShape> nv_shapes(VkInstance instance, VkPhysicalDevice pd) {
  auto query = (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)vkGetInstanceProcAddr(
      instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
  std::vector<MatrixShape> out;
  uint32_t n = 0;
  if (!query || query(pd, &n, nullptr) != VK_SUCCESS) return out;
  std::vector<VkCooperativeMatrixPropertiesNV> props(n, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
  if (query(pd, &n, props.data()) != VK_SUCCESS) return out;
  for (const auto& p : props)
    if (fp16_into_fp32(p.AType, p.BType, p.CType, p.DType, p.scope)) out.push_back({p.MSize, p.NSize, p.KSize});
  return out;
}

}  // namespace

const char* matrix_unit_name(MatrixUnitApi api) {
  switch (api) {
    case MatrixUnitApi::Emulated: return "emulated";
    case MatrixUnitApi::NV: return "NV";
    case MatrixUnitApi::KHR: return "KHR";
    default: return "none";
  }
}

std::string matrix_unit_kernel(const std::string& base, MatrixUnitApi api) {
  switch (api) {
    case MatrixUnitApi::Emulated: return base + "_emulated";
    case MatrixUnitApi::NV: return base;
    case MatrixUnitApi::KHR: return base + "_khr";
    default: return "";
  }
}

MatrixUnitInfo query_matrix_unit(VkInstance instance, VkPhysicalDevice pd) {
  MatrixUnitInfo info;
  // The kernel's SPIR-V declares Float16 and the Vulkan memory model.
  VkPhysicalDeviceVulkanMemoryModelFeatures mm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES};
  VkPhysicalDeviceShaderFloat16Int8Features f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  f16.pNext = &mm;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &f16;
  vkGetPhysicalDeviceFeatures2(pd, &f2);
  if (!mm.vulkanMemoryModel || !f16.shaderFloat16) return info;
  if (has_extension(pd, "VK_KHR_cooperative_matrix") && !find_shader(matrix_unit_kernel("matmul_coop", MatrixUnitApi::KHR)).empty()) {
    info.shapes = khr_shapes(instance, pd);
    if (!info.shapes.empty()) info.api = MatrixUnitApi::KHR;
  }
  if (info.api == MatrixUnitApi::None && has_extension(pd, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME)) {
    info.shapes = nv_shapes(instance, pd);
    if (!info.shapes.empty()) info.api = MatrixUnitApi::NV;
  }
  return info;
}

MatrixShape choose_matrix_shape(const std::vector<MatrixShape>& offered) {
  MatrixShape best;
  for (const MatrixShape& s : offered) {
    if (s == MatrixShape{16, 16, 16}) return s;
    auto fits = [](uint32_t v) { return v >= 8 && v <= 32; };
    if (!fits(s.m) || !fits(s.n) || !fits(s.k)) continue;
    if (!best.m || s.m * s.n * s.k < best.m * best.n * best.k) best = s;
  }
  return best;
}

MatrixUnitEnable::MatrixUnitEnable(MatrixUnitApi api, void** pnext, std::vector<const char*>& extensions) {
  if (api != MatrixUnitApi::NV && api != MatrixUnitApi::KHR) return;
  memory_model_.vulkanMemoryModel = VK_TRUE;
  memory_model_.pNext = *pnext;
  if (api == MatrixUnitApi::NV) {
    nv_.cooperativeMatrix = VK_TRUE;
    nv_.pNext = &memory_model_;
    *pnext = &nv_;
    extensions.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
  } else {
    khr_ = KhrFeatures{kKhrFeaturesType, &memory_model_, VK_TRUE, VK_FALSE};
    *pnext = &khr_;
    extensions.push_back("VK_KHR_cooperative_matrix");
  }
}

}  // namespace vksd
