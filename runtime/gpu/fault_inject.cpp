#include "runtime/gpu/fault_inject.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vksd {

namespace {

struct FaultPlan {
  bool on = false;
  bool matrix_unit = false;  // VKSD_TEST_FAULT=matrix_unit
  FaultSite site = FaultSite::Alloc;
  long nth = 0;
  VkResult result = VK_SUCCESS;
};

// Parsed once. A malformed value stops the process (exit 2): a test that sets it wants it to take
// effect, and throwing from inside an allocation would leave that call half done.
FaultPlan parse_plan() {
  FaultPlan p;
  const char* v = std::getenv("VKSD_TEST_FAULT");
  if (!v || !*v) return p;
  if (std::strcmp(v, "matrix_unit") == 0) {
    p.matrix_unit = true;
    return p;
  }
  char site[16] = "", result[16] = "";
  long n = 0;
  if (std::sscanf(v, "%15[a-z]:%ld:%15[a-z_]", site, &n, result) != 3 || n < 1 ||
      (std::strcmp(site, "alloc") != 0 && std::strcmp(site, "transfer") != 0 && std::strcmp(site, "graph") != 0) ||
      (std::strcmp(result, "oom") != 0 && std::strcmp(result, "device_lost") != 0)) {
    std::fprintf(stderr, "vksd: VKSD_TEST_FAULT must be SITE:N:RESULT with SITE alloc, transfer or graph, N >= 1, RESULT oom or device_lost, or matrix_unit (got '%s')\n", v);
    std::_Exit(2);
  }
  p.on = true;
  p.site = std::strcmp(site, "alloc") == 0 ? FaultSite::Alloc : std::strcmp(site, "transfer") == 0 ? FaultSite::Transfer : FaultSite::Graph;
  p.nth = n;
  p.result = std::strcmp(result, "oom") == 0 ? VK_ERROR_OUT_OF_DEVICE_MEMORY : VK_ERROR_DEVICE_LOST;
  return p;
}

std::atomic<long> g_calls[3];

const FaultPlan& plan() {
  static const FaultPlan p = parse_plan();
  return p;
}

}  // namespace

VkResult injected_fault(FaultSite site) {
  const FaultPlan& f = plan();
  if (!f.on || f.site != site) return VK_SUCCESS;
  return g_calls[(int)site].fetch_add(1) + 1 == f.nth ? f.result : VK_SUCCESS;
}

bool injected_matrix_unit_fault() { return plan().matrix_unit; }

}  // namespace vksd
