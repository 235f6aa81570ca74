#include "runtime/gpu/context.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/error.h"
#include "runtime/gpu/device_hint.h"
#include "runtime/gpu/fault_inject.h"
#include "runtime/gpu/kernel.h"
#include "runtime/gpu/layer_pin.h"
#include "runtime/gpu/staging.h"

namespace vksd {

const char* vk_result_name(VkResult r) {
  switch (r) {
#define C(x) case x: return #x;
    C(VK_SUCCESS) C(VK_NOT_READY) C(VK_TIMEOUT) C(VK_INCOMPLETE) C(VK_ERROR_OUT_OF_HOST_MEMORY)
    C(VK_ERROR_OUT_OF_DEVICE_MEMORY) C(VK_ERROR_INITIALIZATION_FAILED) C(VK_ERROR_DEVICE_LOST)
    C(VK_ERROR_MEMORY_MAP_FAILED) C(VK_ERROR_LAYER_NOT_PRESENT) C(VK_ERROR_EXTENSION_NOT_PRESENT)
    C(VK_ERROR_FEATURE_NOT_PRESENT) C(VK_ERROR_INCOMPATIBLE_DRIVER) C(VK_ERROR_TOO_MANY_OBJECTS)
    C(VK_ERROR_FORMAT_NOT_SUPPORTED) C(VK_ERROR_FRAGMENTED_POOL) C(VK_ERROR_OUT_OF_POOL_MEMORY)
#undef C
    default: return "VK_ERROR_UNKNOWN";
  }
}

ContextOptions ContextOptions::from_env() {
  ContextOptions o;
  if (const char* v = std::getenv("VKSD_VALIDATION")) o.validation = std::strcmp(v, "0") != 0;
  if (const char* d = std::getenv("VKSD_DEVICE")) o.device = d;
  if (const char* f = std::getenv("VKSD_FP32")) o.prefer_fp16 = std::strcmp(f, "1") != 0;
  return o;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL debug_callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                     VkDebugUtilsMessageTypeFlagsEXT,
                                                     const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                     void* user) {
  if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
    static_cast<Context*>(user)->note_validation_message(data->pMessage);
  }
  return VK_FALSE;
}

static std::atomic<uint64_t> g_process_messages{0};
uint64_t Context::process_validation_messages() { return g_process_messages.load(); }

void Context::note_validation_message(const char* msg) {
  validation_messages_++;
  g_process_messages++;
  std::fprintf(stderr, "[vulkan validation] %s\n", msg);
  std::lock_guard<std::mutex> lock(msg_mutex_);
  last_message_ = msg;
}

std::string Context::last_validation_message() const {
  std::lock_guard<std::mutex> lock(msg_mutex_);
  return last_message_;
}

static const char* vendor_name(uint32_t id) {
  switch (id) {
    case 0x1002: return "AMD";
    case 0x10DE: return "NVIDIA";
    case 0x8086: return "Intel";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x106B: return "Apple";
    case 0x10005: return "Mesa";
    default: return "unknown";
  }
}

static DeviceInfo describe(VkInstance instance, VkPhysicalDevice pd, uint32_t index) {
  DeviceInfo d;
  d.index = index;
  VkPhysicalDeviceProperties base;
  vkGetPhysicalDeviceProperties(pd, &base);
  VkPhysicalDeviceSubgroupProperties sub{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceDriverProperties drv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceSubgroupSizeControlProperties ssc{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
  sub.pNext = &drv;
  if (base.apiVersion >= VK_API_VERSION_1_3) drv.pNext = &ssc;  // core in 1.3
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  p2.pNext = &sub;
  vkGetPhysicalDeviceProperties2(pd, &p2);
  const auto& p = p2.properties;
  const auto& l = p.limits;
  d.name = p.deviceName;
  d.vendor = vendor_name(p.vendorID);
  d.driver = std::string(drv.driverName) + " " + drv.driverInfo;
  d.api_version = p.apiVersion;
  switch (p.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: d.type = "discrete GPU"; d.type_rank = 4; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: d.type = "integrated GPU"; d.type_rank = 3; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: d.type = "virtual GPU"; d.type_rank = 2; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: d.type = "CPU"; d.type_rank = 1; break;
    default: d.type = "other"; d.type_rank = 0; break;
  }
  d.max_storage_buffer_range = l.maxStorageBufferRange;
  d.max_texel_buffer_elements = l.maxTexelBufferElements;
  d.min_texel_offset_alignment = l.minTexelBufferOffsetAlignment;
  d.max_push_constants = l.maxPushConstantsSize;
  d.max_shared_memory = l.maxComputeSharedMemorySize;
  d.max_workgroup_invocations = l.maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; ++i) d.max_workgroup_count[i] = l.maxComputeWorkGroupCount[i];
  d.subgroup_size = sub.subgroupSize;
  d.max_subgroup_size = std::max(sub.subgroupSize, ssc.maxSubgroupSize);
  d.timestamps = l.timestampComputeAndGraphics;
  d.timestamp_period_ns = l.timestampPeriod;

  VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceMaintenance4Properties m4{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES};
  VkPhysicalDeviceProperties2 q2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  q2.pNext = &m3;
  bool has_m4 = p.apiVersion >= VK_API_VERSION_1_3;
  if (has_m4) m3.pNext = &m4;
  vkGetPhysicalDeviceProperties2(pd, &q2);
  d.max_memory_allocation = m3.maxMemoryAllocationSize;
  d.max_buffer_size = has_m4 ? m4.maxBufferSize : m3.maxMemoryAllocationSize;

  VkPhysicalDeviceShaderFloat16Int8Features f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &f16;
  vkGetPhysicalDeviceFeatures2(pd, &f2);
  auto texel_ok = [&](VkFormat f) {
    VkFormatProperties fp;
    vkGetPhysicalDeviceFormatProperties(pd, f, &fp);
    VkFormatFeatureFlags need = VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT | VK_FORMAT_FEATURE_STORAGE_TEXEL_BUFFER_BIT;
    return (fp.bufferFeatures & need) == need;
  };
  d.fp16 = f16.shaderFloat16 && texel_ok(VK_FORMAT_R16_SFLOAT) && texel_ok(VK_FORMAT_R16G16B16A16_SFLOAT);
  d.int8 = f16.shaderInt8;
  d.matrix_unit = query_matrix_unit(instance, pd);

  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(pd, &mp);
  for (uint32_t i = 0; i < mp.memoryHeapCount; ++i)
    d.heaps.push_back({mp.memoryHeaps[i].size, (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0});
  return d;
}

static VkInstance create_instance(bool validation, VkDebugUtilsMessengerCreateInfoEXT* dbg,
                                  const std::vector<std::string>& extra = {}) {
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "vksd";
  app.pEngineName = "vksd";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  const char* layers[] = {"VK_LAYER_KHRONOS_validation"};
  std::vector<const char*> exts;
  for (auto& e : extra) exts.push_back(e.c_str());
  VkValidationFeatureEnableEXT enables[] = {VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
  VkValidationFeaturesEXT features{VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT};
  if (validation) {
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> props(n);
    vkEnumerateInstanceLayerProperties(&n, props.data());
    bool found = std::any_of(props.begin(), props.end(),
                             [&](auto& p) { return std::strcmp(p.layerName, layers[0]) == 0; });
    if (!found) fail("validation requested but VK_LAYER_KHRONOS_validation is not installed (apt install vulkan-validationlayers)");
    pin_validation_layer_for_sanitizers();
    ci.enabledLayerCount = 1;
    ci.ppEnabledLayerNames = layers;
    exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    features.enabledValidationFeatureCount = 1;
    features.pEnabledValidationFeatures = enables;
    features.pNext = dbg;
    ci.pNext = &features;
  }
  ci.enabledExtensionCount = (uint32_t)exts.size();
  ci.ppEnabledExtensionNames = exts.data();
  VkInstance inst = VK_NULL_HANDLE;
  VkResult r = vkCreateInstance(&ci, nullptr, &inst);
  if (r != VK_SUCCESS)
    fail(std::string("cannot create a Vulkan instance (") + vk_result_name(r) +
         "): is a Vulkan driver installed? (apt install mesa-vulkan-drivers)");
  return inst;
}

std::vector<DeviceInfo> Context::list_devices() {
  VkInstance inst = create_instance(false, nullptr);
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(inst, &n, nullptr);
  std::vector<VkPhysicalDevice> pds(n);
  vkEnumeratePhysicalDevices(inst, &n, pds.data());
  std::vector<DeviceInfo> out;
  for (uint32_t i = 0; i < n; ++i) out.push_back(describe(inst, pds[i], i));
  vkDestroyInstance(inst, nullptr);
  return out;
}

Context::Context(const ContextOptions& opts) : opts_(opts) {
  VkDebugUtilsMessengerCreateInfoEXT dbg{VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
  dbg.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  dbg.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  dbg.pfnUserCallback = debug_callback;
  dbg.pUserData = this;
  instance_ = create_instance(opts_.validation, &dbg, opts_.instance_extensions);
  if (opts_.validation) {
    auto create = (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(instance_, "vkCreateDebugUtilsMessengerEXT");
    if (create) vk_check(create(instance_, &dbg, nullptr, &messenger_), "vkCreateDebugUtilsMessengerEXT");
  }

  uint32_t n = 0;
  vkEnumeratePhysicalDevices(instance_, &n, nullptr);
  if (n == 0) fail("no Vulkan device found (on a machine without a GPU, install mesa-vulkan-drivers for lavapipe)");
  std::vector<VkPhysicalDevice> pds(n);
  vkEnumeratePhysicalDevices(instance_, &n, pds.data());
  std::vector<DeviceInfo> infos;
  for (uint32_t i = 0; i < n; ++i) infos.push_back(describe(instance_, pds[i], i));

  int chosen = -1;
  if (!opts_.device.empty()) {
    char* end = nullptr;
    long idx = std::strtol(opts_.device.c_str(), &end, 10);
    if (end && *end == 0) {
      if (idx < 0 || idx >= (long)n) fail("device index " + opts_.device + " out of range (" + std::to_string(n) + " devices; see `vksd devices`)");
      chosen = (int)idx;
    } else {
      for (uint32_t i = 0; i < n && chosen < 0; ++i) {
        std::string a = infos[i].name, b = opts_.device;
        std::transform(a.begin(), a.end(), a.begin(), ::tolower);
        std::transform(b.begin(), b.end(), b.begin(), ::tolower);
        if (a.find(b) != std::string::npos) chosen = (int)i;
      }
      if (chosen < 0) fail("no Vulkan device matches '" + opts_.device + "' (see `vksd devices`)");
    }
  } else {
    chosen = 0;
    for (uint32_t i = 1; i < n; ++i)
      if (infos[i].type_rank > infos[chosen].type_rank) chosen = (int)i;
  }
  physical_ = pds[chosen];
  info_ = infos[chosen];
  if (info_.api_version < VK_API_VERSION_1_2) fail("device '" + info_.name + "' supports only Vulkan < 1.2; vksd needs 1.2");
  vkGetPhysicalDeviceMemoryProperties(physical_, &mem_props_);
  profile_ = DeviceProfile::choose(info_);

  uint32_t qn = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &qn, nullptr);
  std::vector<VkQueueFamilyProperties> qf(qn);
  vkGetPhysicalDeviceQueueFamilyProperties(physical_, &qn, qf.data());
  queue_family_ = UINT32_MAX;
  for (uint32_t i = 0; i < qn; ++i)
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
      queue_family_ = i;
      if (qf[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) break;  // prefer the universal queue (viewer shares it)
    }
  if (queue_family_ == UINT32_MAX) fail("device '" + info_.name + "' has no compute queue");
  info_.timestamps = info_.timestamps || qf[queue_family_].timestampValidBits > 0;
  if (qf[queue_family_].timestampValidBits == 0) info_.timestamps = false;

  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = queue_family_;
  qci.queueCount = 1;
  qci.pQueuePriorities = &prio;

  VkPhysicalDeviceShaderFloat16Int8Features f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  f16.shaderFloat16 = info_.fp16;
  f16.shaderInt8 = info_.int8;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &f16;
  VkPhysicalDeviceFeatures supported{};
  vkGetPhysicalDeviceFeatures(physical_, &supported);
  f2.features.shaderStorageImageWriteWithoutFormat = supported.shaderStorageImageWriteWithoutFormat;
  if (!supported.shaderStorageImageWriteWithoutFormat)
    fail("device '" + info_.name + "' lacks shaderStorageImageWriteWithoutFormat, which vksd's kernels use");

  std::vector<const char*> exts;
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &f2;
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  // The viewer presents from the same device.
  if (!opts_.instance_extensions.empty()) exts.push_back(VK_KHR_SWAPCHAIN_EXTENSION_NAME);
  // The matrix unit, where the driver offers it (the profile may still choose not to use it).
  MatrixUnitEnable matrix_unit(info_.matrix_unit.api, &f16.pNext, exts);
  dci.enabledExtensionCount = (uint32_t)exts.size();
  dci.ppEnabledExtensionNames = exts.data();
  vk_check(vkCreateDevice(physical_, &dci, nullptr, &device_), "vkCreateDevice");
  vkGetDeviceQueue(device_, queue_family_, 0, &queue_);

  kernels_ = std::make_unique<Kernels>(*this);
  staging_ = std::make_unique<StagingRing>(*this);
}

Context::~Context() {
  if (device_) wait_idle();
  staging_.reset();
  kernels_.reset();
  for (auto& [id, tc] : pools_) {
    if (tc.fence) vkDestroyFence(device_, tc.fence, nullptr);
    if (tc.pool) vkDestroyCommandPool(device_, tc.pool, nullptr);
  }
  if (device_) vkDestroyDevice(device_, nullptr);
  if (messenger_) {
    auto destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT");
    if (destroy) destroy(instance_, messenger_, nullptr);
  }
  if (instance_) vkDestroyInstance(instance_, nullptr);
}

uint32_t Context::memory_type(uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid) const {
  for (int pass = 0; pass < 2; ++pass)
    for (uint32_t i = 0; i < mem_props_.memoryTypeCount; ++i) {
      auto f = mem_props_.memoryTypes[i].propertyFlags;
      if (!(bits & (1u << i)) || (f & want) != want) continue;
      if (pass == 0 && (f & avoid)) continue;
      return i;
    }
  fail("no Vulkan memory type with the required properties");
}

bool Context::format_supported(VkFormat f, VkFormatFeatureFlags features) const {
  VkFormatProperties fp;
  vkGetPhysicalDeviceFormatProperties(physical_, f, &fp);
  return (fp.bufferFeatures & features) == features;
}

Context::ThreadCommands& Context::thread_commands() {
  std::lock_guard<std::mutex> lock(pools_mutex_);
  ThreadCommands& tc = pools_[std::this_thread::get_id()];  // std::map: references stay valid
  if (!tc.pool) {
    VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pci.queueFamilyIndex = queue_family_;
    vk_check(vkCreateCommandPool(device_, &pci, nullptr, &tc.pool), "vkCreateCommandPool");
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    vk_check(vkCreateFence(device_, &fci, nullptr, &tc.fence), "vkCreateFence");
  }
  return tc;
}

void Context::submit(const VkSubmitInfo& si, VkFence fence) {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  const VkResult r = vkQueueSubmit(queue_, 1, &si, fence);
  if (r != VK_SUCCESS) fail(std::string("submitting GPU work (vkQueueSubmit) failed: ") + vk_result_name(r) + vk_result_advice(r));
}

VkResult Context::present(const VkPresentInfoKHR& pi) {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  return vkQueuePresentKHR(queue_, &pi);
}

void Context::wait_idle() {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  vkDeviceWaitIdle(device_);
}

void Context::track_memory(const std::string& category, int64_t bytes) {
  std::lock_guard<std::mutex> lock(memory_mutex_);
  auto& v = memory_[category];
  const uint64_t before = v;
  v = (uint64_t)std::max<int64_t>(0, (int64_t)v + bytes);
  memory_total_ = memory_total_ + v - before;
  memory_peak_ = std::max(memory_peak_, memory_total_);
  memory_stage_peak_ = std::max(memory_stage_peak_, memory_total_);
}

uint64_t Context::memory_total() const {
  std::lock_guard<std::mutex> lock(memory_mutex_);
  return memory_total_;
}

uint64_t Context::memory_peak() const {
  std::lock_guard<std::mutex> lock(memory_mutex_);
  return memory_peak_;
}

void Context::reset_memory_peak() {
  std::lock_guard<std::mutex> lock(memory_mutex_);
  memory_peak_ = memory_total_;
}

void Context::begin_memory_stage() {
  std::lock_guard<std::mutex> lock(memory_mutex_);
  memory_stage_peak_ = memory_total_;
}

uint64_t Context::memory_stage_peak() const {
  std::lock_guard<std::mutex> lock(memory_mutex_);
  return memory_stage_peak_;
}

std::map<std::string, uint64_t> Context::memory_in_use() const {
  std::lock_guard<std::mutex> lock(memory_mutex_);
  std::map<std::string, uint64_t> r;
  for (auto& [k, v] : memory_)
    if (v) r[k] = v;
  return r;
}

VkCommandBuffer Context::begin_commands() {
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = thread_commands().pool;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VkCommandBuffer cb;
  vk_check(vkAllocateCommandBuffers(device_, &ai, &cb), "vkAllocateCommandBuffers");
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  vk_check(vkBeginCommandBuffer(cb, &bi), "vkBeginCommandBuffer");
  return cb;
}

void Context::submit_and_wait(VkCommandBuffer cb) {
  vk_check(vkEndCommandBuffer(cb), "vkEndCommandBuffer");
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  ThreadCommands& tc = thread_commands();
  submit(si, tc.fence);
  VkResult r = vkWaitForFences(device_, 1, &tc.fence, VK_TRUE, UINT64_MAX);
  if (r == VK_SUCCESS) r = injected_fault(FaultSite::Transfer);  // a test may force a failure
  if (r != VK_SUCCESS) fail(std::string("a one-time GPU transfer (upload or download) failed: ") + vk_result_name(r) + vk_result_advice(r));
  vkResetFences(device_, 1, &tc.fence);
  vkFreeCommandBuffers(device_, tc.pool, 1, &cb);
}

}  // namespace vksd
