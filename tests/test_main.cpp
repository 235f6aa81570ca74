// doctest entry point. Every test process shares one Vulkan Context created with the Khronos
// validation layer and synchronization validation (VKSD_VALIDATION=1, set by ctest); after the
// tests ran, any validation message seen turns the run into a failure.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "tests/test_util.h"

int main(int argc, char** argv) {
  doctest::Context dt;
  dt.applyCommandLine(argc, argv);
  int rc = dt.run();
  uint64_t msgs = vksd::test::validation_messages_so_far();
  vksd::test::shutdown_context();  // destroys every Vulkan object: leaks are reported here
  msgs = std::max(msgs, vksd::test::validation_messages_at_shutdown());
  if (msgs) {
    std::fprintf(stderr, "FAILED: %llu Vulkan validation message(s)\n", (unsigned long long)msgs);
    return rc ? rc : 1;
  }
  return rc;
}
