// Errors: every failure surfaces as vksd::Error with a message that names the problem.
#pragma once
#include <stdexcept>
#include <string>
#include <vulkan/vulkan.h>

namespace vksd {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* vk_result_name(VkResult r);

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

inline void vk_check(VkResult r, const char* what) {
  if (r != VK_SUCCESS) fail(std::string(what) + " failed: " + vk_result_name(r));
}

}  // namespace vksd
