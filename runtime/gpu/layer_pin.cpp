#include "runtime/gpu/layer_pin.h"

#include <dlfcn.h>

#if defined(__SANITIZE_ADDRESS__)
#define VKSD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VKSD_ASAN 1
#endif
#endif

namespace vksd {

void pin_validation_layer_for_sanitizers() {
#ifdef VKSD_ASAN
  // The library the layer's manifest names; dlopen finds the same file the loader will, and one
  // RTLD_NODELETE open keeps it mapped after the loader's dlclose. The handle is never closed.
  // Not found (a layer from VK_LAYER_PATH elsewhere): nothing pinned, LeakSanitizer may then
  // report the layer's caches again.
  static void* handle = dlopen("libVkLayer_khronos_validation.so", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  (void)handle;
#endif
}

}  // namespace vksd
