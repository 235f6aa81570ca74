// Keeps the Khronos validation layer's library loaded for the whole process in sanitizer builds.
//
// The Vulkan loader dlclose()s the layer at vkDestroyInstance. Unloading unmaps the layer's
// globals, so the heap blocks that only those globals pointed to (process-lifetime caches the
// layer never frees) look unreachable to LeakSanitizer at exit, and their stacks point into code
// that is gone ("unknown module"), which no suppression can name: 1.9 MB of false leaks per
// validated run. Pinned (RTLD_NODELETE), the globals stay mapped and are scanned like ours, and a
// real leak in our code is still reported. Does nothing in other builds.
#pragma once

namespace vksd {

void pin_validation_layer_for_sanitizers();

}  // namespace vksd
