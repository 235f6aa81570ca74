// `vksd devices`: what Vulkan devices exist and the limits that decide how vksd runs on them.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/command.h"
#include "runtime/gpu/context.h"
#include "runtime/ops/matrix_unit_check.h"

// --check: the matrix unit of device `index` against the scalar kernels (matrix_unit_check.h).
// Returns whether it may be used (true also where there is none).
static bool check_matrix_unit(uint32_t index) {
  vksd::ContextOptions co = vksd::ContextOptions::from_env();
  co.device = std::to_string(index);
  vksd::Context ctx(co);
  const vksd::ops::MatrixUnitCheck r = vksd::ops::check_matrix_unit(ctx);
  if (r.probes.empty()) {
    std::printf("    matrix unit check: no matrix unit in use\n");
    return true;
  }
  std::string errors;
  for (const vksd::ops::MatrixUnitProbe& p : r.probes) {
    char e[32];
    std::snprintf(e, sizeof e, "%.1e", p.error);
    errors += (errors.empty() ? "" : ", ") + p.op + " " + (p.on_unit ? e : "(not on the unit)");
  }
  std::printf("    matrix unit check (relative L2 vs the scalar kernels): %s: %s\n", errors.c_str(),
              r.notice.empty() ? "agrees" : "FAILED, the scalar kernels are used");
  return r.notice.empty();
}

static int cmd_devices(int argc, char** argv) {
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::printf(
          "usage: vksd devices [--check]\n\nLists the Vulkan devices with the limits that decide how vksd runs on them\n"
          "(buffer ranges, memory heaps, fp16/int8, subgroup size) and the kernel variants vksd\n"
          "chooses for each (docs/cli.md, environment). Pick one for any command with\n"
          "--device <index|name> or VKSD_DEVICE.\n\n"
          "  --check   also run each device's matrix unit (cooperative matrices) against the scalar\n"
          "            kernels, as every generation does before its first network; exit 1 if one\n"
          "            disagrees\n");
      return 0;
    }
    if (!std::strcmp(argv[i], "--check")) {
      check = true;
      continue;
    }
    std::fprintf(stderr, "vksd devices: unknown option '%s' (see vksd devices --help)\n", argv[i]);
    return 2;
  }
  auto devs = vksd::Context::list_devices();
  if (devs.empty()) {
    std::fprintf(stderr, "vksd: no Vulkan devices found\n");
    return 1;
  }
  bool failed = false;
  for (const auto& d : devs) {
    std::printf("[%u] %s\n", d.index, d.name.c_str());
    std::printf("    vendor %s, type %s, driver %s, Vulkan %u.%u.%u\n", d.vendor.c_str(), d.type.c_str(),
                d.driver.c_str(), VK_API_VERSION_MAJOR(d.api_version), VK_API_VERSION_MINOR(d.api_version),
                VK_API_VERSION_PATCH(d.api_version));
    std::printf("    maxStorageBufferRange %llu MiB, maxMemoryAllocationSize %llu MiB, maxTexelBufferElements %llu\n",
                (unsigned long long)(d.max_storage_buffer_range >> 20),
                (unsigned long long)(d.max_memory_allocation >> 20),
                (unsigned long long)d.max_texel_buffer_elements);
    for (size_t h = 0; h < d.heaps.size(); ++h)
      std::printf("    heap %zu: %llu MiB%s\n", h, (unsigned long long)(d.heaps[h].first >> 20),
                  d.heaps[h].second ? " device-local" : "");
    std::string shapes;  // the fp16 x fp16 -> fp32 tile shapes of the matrix unit
    for (const vksd::MatrixShape& s : d.matrix_unit.shapes)
      shapes += (shapes.empty() ? " " : ", ") + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
    std::printf("    subgroup %u, shared memory %u KiB, fp16 %s, int8 %s, cooperative matrix %s%s\n", d.subgroup_size,
                d.max_shared_memory >> 10, d.fp16 ? "yes" : "no", d.int8 ? "yes" : "no",
                d.matrix_unit.api == vksd::MatrixUnitApi::None ? "no" : vksd::matrix_unit_name(d.matrix_unit.api),
                shapes.c_str());
    std::printf("    kernels: %s\n", vksd::DeviceProfile::choose(d).describe().c_str());
    if (check && !check_matrix_unit(d.index)) failed = true;
  }
  return failed ? 1 : 0;
}

VKSD_COMMAND(devices, "list Vulkan devices and the limits that matter to vksd", cmd_devices);
