// Keeps the Khronos validation layer's library loaded for the whole process in sanitizer builds.
//
// The Vulkan loader dlclose()s the layer at vkDestroyInstance. The layer never frees ≈ 1.9 MB of
// its own allocations per validated run, and LeakSanitizer reports them at exit; once the
// library is unloaded their stacks point into code that is gone ("unknown module"), which no
// suppression can name. Pinned (RTLD_NODELETE), the frames keep the library's name and
// tests/sanitize/lsan.supp suppresses exactly that library; a leak in our code is still
// reported. Does nothing in other builds.
#pragma once

namespace vksd {

void pin_validation_layer_for_sanitizers();

}  // namespace vksd
