// The embedded SPIR-V (every shaders/*.comp and its variants, CMakeLists.txt) passes the
// SPIR-V validator for Vulkan 1.2 — including the matrix-unit builds this machine's driver
// cannot run (matmul_coop for VK_NV_cooperative_matrix, matmul_coop_khr where glslc could
// build it): the validator is the check they get here; a GPU runs them (scripts/device_check.sh).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/gpu/kernel.h"

using namespace vksd;

TEST_CASE("shaders: every embedded SPIR-V module passes spirv-val (Vulkan 1.2)") {
  REQUIRE_MESSAGE(std::system("command -v spirv-val > /dev/null") == 0,
                  "spirv-val not found: install spirv-tools (scripts/setup.sh does)");
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "vksd_spirv_val";
  std::filesystem::create_directories(dir);
  const std::vector<std::string> names = shader_names();
  CHECK(std::find(names.begin(), names.end(), "matmul_coop") != names.end());
  CHECK(std::find(names.begin(), names.end(), "matmul_coop_emulated") != names.end());
  for (const std::string& name : names) {
    CAPTURE(name);
    const auto words = find_shader(name);
    REQUIRE(!words.empty());
    const std::filesystem::path spv = dir / (name + ".spv");
    std::ofstream(spv, std::ios::binary).write(reinterpret_cast<const char*>(words.data()), words.size_bytes());
    const std::string cmd = "spirv-val --target-env vulkan1.2 " + spv.string() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    REQUIRE(p);
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    const int rc = pclose(p);
    CAPTURE(out);
    CHECK(rc == 0);
  }
  std::filesystem::remove_all(dir);
}
