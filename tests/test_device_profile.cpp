// DeviceProfile (runtime/gpu/device_profile.h): the kernel variants chosen once per Context.
// On lavapipe the profile must be what its limits say (a CPU device with subgroups: every
// subgroup-sharing variant on); a GPU's limits switch them off; the environment overrides
// apply, and a malformed override is an Error naming the variable.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/device_profile.h"
#include "runtime/gpu/kernel.h"
#include "tests/test_util.h"

using namespace vksd;

namespace {

DeviceProfile::Env env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

std::string error_of_choose(const DeviceInfo& info, const std::map<std::string, std::string>& vars) {
  try {
    DeviceProfile::choose(info, env_of(vars));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("device profile: the Context's profile follows the device's limits") {
  Context& c = test::ctx();
  const DeviceInfo& info = c.info();
  const DeviceProfile& p = c.profile();
  CHECK(p.cpu == (info.type == "CPU"));
  CHECK(p.gpu == (info.type_rank >= 2));
  if (info.subgroup_size) CHECK(p.subgroup == info.subgroup_size);
  const bool sg = info.type == "CPU" && info.subgroup_size > 0;
  CHECK(p.gemm_shared_a == sg);
  CHECK(p.conv_shared_weights == sg);
  CHECK(p.attention_shared_kv == sg);
  CHECK(p.conv_multi_row == (info.type == "CPU"));
  const uint32_t s = info.subgroup_size;
  CHECK(p.norm_subgroup_rows == (s >= 8 && (s & (s - 1)) == 0));
  CHECK(p.gemm_tiles[0] == 0);
  CHECK(p.conv_tiles[0] == 0);
  MESSAGE(info.name << ": " << p.describe());
  if (info.driver.find("llvmpipe") != std::string::npos || info.name.find("llvmpipe") != std::string::npos) {
    // lavapipe as measured (bench/RESULTS.md): subgroup 8, every shared-fetch variant on.
    CHECK(p.cpu);
    CHECK(p.subgroup == 8);
    CHECK(p.describe() == "cpu, subgroup 8, matmul SG, conv SG+RB, attention SG, norm RL");
  }
}

TEST_CASE("device profile: GPU limits and environment overrides") {
  DeviceInfo gpu;
  gpu.type = "discrete GPU";
  gpu.type_rank = 4;
  gpu.subgroup_size = 32;
  const DeviceProfile g = DeviceProfile::choose(gpu, env_of({}));
  CHECK(!g.cpu);
  CHECK(g.gpu);
  CHECK(!g.gemm_shared_a);
  CHECK(!g.conv_shared_weights);
  CHECK(!g.attention_shared_kv);
  CHECK(!g.conv_multi_row);
  CHECK(g.norm_subgroup_rows);  // 8 lanes are an aligned part of a 32-wide subgroup

  DeviceInfo cpu;
  cpu.type = "CPU";
  cpu.type_rank = 1;
  cpu.subgroup_size = 8;
  const DeviceProfile off = DeviceProfile::choose(
      cpu, env_of({{"VKSD_GEMM_NO_SG", "1"}, {"VKSD_CONV_NO_SG", "1"}, {"VKSD_ATTN_NO_SG", "1"}, {"VKSD_NORM_NO_RL", "1"}}));
  CHECK(off.cpu);
  CHECK(!off.gemm_shared_a);
  CHECK(!off.conv_shared_weights);
  CHECK(!off.attention_shared_kv);
  CHECK(!off.norm_subgroup_rows);
  CHECK(off.conv_multi_row);
  const DeviceProfile zero = DeviceProfile::choose(cpu, env_of({{"VKSD_GEMM_NO_SG", "0"}}));
  CHECK(zero.gemm_shared_a);  // "0" leaves the variant on

  const DeviceProfile tiles =
      DeviceProfile::choose(cpu, env_of({{"VKSD_GEMM_TILES", "16,8,8,2"}, {"VKSD_CONV_TILES", "8,4,8,2"}}));
  CHECK(tiles.gemm_tiles == std::array<uint32_t, 4>{16, 8, 8, 2});
  CHECK(tiles.conv_tiles == std::array<uint32_t, 4>{8, 4, 8, 2});
  CHECK(!tiles.conv_multi_row);  // forced conv tiles mean one-row blocks
  CHECK(tiles.describe() == "cpu, subgroup 8, matmul SG 16,8,8,2, conv SG 8,4,8,2, attention SG, norm RL");

  CHECK(error_of_choose(cpu, {{"VKSD_GEMM_TILES", "16,8"}}).find("VKSD_GEMM_TILES must be four positive integers") !=
        std::string::npos);
  CHECK(error_of_choose(cpu, {{"VKSD_CONV_TILES", "8,4,0,2"}}).find("VKSD_CONV_TILES") != std::string::npos);
  CHECK(error_of_choose(cpu, {{"VKSD_CONV_TILES", "8,4,8,2x"}}).find("VKSD_CONV_TILES") != std::string::npos);
  CHECK(DeviceProfile::choose(cpu, env_of({})).compact_conv_below_flops == 1e8);
  CHECK(DeviceProfile::choose(cpu, env_of({})).compact_matmul_below_flops == 2e7);
  CHECK(DeviceProfile::choose(cpu, env_of({{"VKSD_COMPACT_MFLOPS", "0"}})).compact_conv_below_flops == 0);
  CHECK(DeviceProfile::choose(cpu, env_of({{"VKSD_COMPACT_MFLOPS", "0"}})).compact_matmul_below_flops == 0);
  CHECK(DeviceProfile::choose(cpu, env_of({{"VKSD_COMPACT_MFLOPS", "50"}})).compact_conv_below_flops == 5e7);
  CHECK(DeviceProfile::choose(cpu, env_of({{"VKSD_COMPACT_MFLOPS", "50"}})).compact_matmul_below_flops == 5e7);
  CHECK(error_of_choose(cpu, {{"VKSD_COMPACT_MFLOPS", "-1"}}).find("VKSD_COMPACT_MFLOPS") != std::string::npos);
  CHECK(error_of_choose(cpu, {{"VKSD_COMPACT_MFLOPS", "5x"}}).find("VKSD_COMPACT_MFLOPS") != std::string::npos);
  CHECK(DeviceProfile::choose(cpu, env_of({{"VKSD_PIPELINE_THREADS", "3"}})).pipeline_threads == 3);
  CHECK(error_of_choose(cpu, {{"VKSD_PIPELINE_THREADS", "0"}}).find("VKSD_PIPELINE_THREADS") != std::string::npos);
  CHECK(error_of_choose(cpu, {{"VKSD_NORM_NO_RL", "yes"}}).find("VKSD_NORM_NO_RL must be 0 or 1") != std::string::npos);
}

TEST_CASE("device profile: the matrix unit is used where the driver offers fp16 x fp16 -> fp32 tiles") {
  DeviceInfo gpu;
  gpu.type = "discrete GPU";
  gpu.type_rank = 4;
  gpu.subgroup_size = gpu.max_subgroup_size = 32;
  gpu.max_shared_memory = 48 << 10;
  gpu.fp16 = true;
  // No matrix unit (lavapipe, older GPUs): the scalar kernels.
  CHECK(DeviceProfile::choose(gpu, env_of({})).matrix_unit == MatrixUnitApi::None);

  // NVIDIA-like: KHR with several shapes; 16x16x16 is taken, one block per subgroup of 32.
  gpu.matrix_unit = {MatrixUnitApi::KHR, {{16, 8, 16}, {16, 16, 16}, {16, 8, 8}}};
  DeviceProfile p = DeviceProfile::choose(gpu, env_of({}));
  CHECK(p.matrix_unit == MatrixUnitApi::KHR);
  CHECK(p.matrix_shape == MatrixShape{16, 16, 16});
  CHECK(p.matrix_workgroup == 128);
  CHECK(p.matrix_blocks_per_subgroup == 1);
  CHECK(p.describe() == "gpu, subgroup 32, matmul plain, conv plain, attention plain, norm RL, matrix unit KHR 16x16x16");
  CHECK(matrix_unit_kernel("matmul_coop", p.matrix_unit) == "matmul_coop_khr");
  CHECK(matrix_unit_kernel("attention_coop", p.matrix_unit) == "attention_coop_khr");

  // Without 16x16x16: the smallest offered shape with sides 8..32.
  gpu.matrix_unit = {MatrixUnitApi::NV, {{32, 8, 16}, {16, 8, 16}, {64, 64, 16}}};
  p = DeviceProfile::choose(gpu, env_of({}));
  CHECK(p.matrix_unit == MatrixUnitApi::NV);
  CHECK(p.matrix_shape == MatrixShape{16, 8, 16});
  CHECK(matrix_unit_kernel("matmul_coop", p.matrix_unit) == "matmul_coop");
  CHECK(choose_matrix_shape({{64, 64, 16}, {4, 4, 4}}) == MatrixShape{});  // none fits

  // A driver that may run the kernel with 64-lane subgroups (AMD) gives a workgroup of 128
  // only two subgroups: each takes two of the four blocks.
  gpu.matrix_unit = {MatrixUnitApi::KHR, {{16, 16, 16}}};
  gpu.subgroup_size = 64;
  gpu.max_subgroup_size = 64;
  CHECK(DeviceProfile::choose(gpu, env_of({})).matrix_blocks_per_subgroup == 2);
  gpu.subgroup_size = 32;  // Intel: reports 32, may run 8..32 — 4 subgroups at least
  gpu.max_subgroup_size = 32;
  CHECK(DeviceProfile::choose(gpu, env_of({})).matrix_blocks_per_subgroup == 1);

  // Too little shared memory for the kernel's tiles (12 KiB at 16x16x16): scalar kernels.
  gpu.max_shared_memory = 8 << 10;
  CHECK(DeviceProfile::choose(gpu, env_of({})).matrix_unit == MatrixUnitApi::None);
  gpu.max_shared_memory = 48 << 10;

  // The environment: 0 switches it off, emulated forces the emulated build, anything else is an Error.
  CHECK(DeviceProfile::choose(gpu, env_of({{"VKSD_MATRIX_UNIT", "0"}})).matrix_unit == MatrixUnitApi::None);
  CHECK(DeviceProfile::choose(gpu, env_of({{"VKSD_MATRIX_UNIT", "1"}})).matrix_unit == MatrixUnitApi::KHR);
  const DeviceProfile e = DeviceProfile::choose(gpu, env_of({{"VKSD_MATRIX_UNIT", "emulated"}}));
  CHECK(e.matrix_unit == MatrixUnitApi::Emulated);
  CHECK(e.matrix_shape == MatrixShape{8, 8, 8});
  CHECK(e.matrix_workgroup == 4 * 32);
  CHECK(error_of_choose(gpu, {{"VKSD_MATRIX_UNIT", "yes"}}).find("VKSD_MATRIX_UNIT must be 0, 1 or emulated") !=
        std::string::npos);
  gpu.fp16 = false;
  CHECK(error_of_choose(gpu, {{"VKSD_MATRIX_UNIT", "emulated"}}).find("shaderFloat16") != std::string::npos);

  // This machine's device: whatever its driver offers, and the kernel it needs is embedded.
  Context& c = test::ctx();
  MESSAGE(c.info().name << ": matrix unit " << std::string(matrix_unit_name(c.info().matrix_unit.api)));
  if (c.info().matrix_unit.api != MatrixUnitApi::None) {
    CHECK(!c.info().matrix_unit.shapes.empty());
    CHECK(!find_shader(matrix_unit_kernel("matmul_coop", c.info().matrix_unit.api)).empty());
  }
  if (c.info().driver.find("llvmpipe") != std::string::npos || c.info().name.find("llvmpipe") != std::string::npos)
    CHECK(c.profile().matrix_unit == MatrixUnitApi::None);  // lavapipe 22.3 has no cooperative matrices
}
