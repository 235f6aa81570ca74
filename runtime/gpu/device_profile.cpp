#include "runtime/gpu/device_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "runtime/error.h"
#include "runtime/gpu/context.h"

namespace vksd {

namespace {

std::array<uint32_t, 4> tiles_from_env(const DeviceProfile::Env& getenv, const char* name) {
  std::array<uint32_t, 4> t{};
  const char* e = getenv(name);
  if (!e || !*e) return t;
  char tail = 0;
  if (std::sscanf(e, "%u,%u,%u,%u%c", &t[0], &t[1], &t[2], &t[3], &tail) != 4 || !t[0] || !t[1] || !t[2] || !t[3])
    fail(std::string(name) + " must be four positive integers a,b,c,d (got '" + e + "')");
  return t;
}

// A switch: unset or "0" = off, "1" = on, anything else an Error.
bool flag_from_env(const DeviceProfile::Env& getenv, const char* name) {
  const char* e = getenv(name);
  if (!e || !*e || std::string(e) == "0") return false;
  if (std::string(e) == "1") return true;
  fail(std::string(name) + " must be 0 or 1 (got '" + e + "')");
}

// The matrix-unit kernel's shared memory: A and B tiles in fp16, one fp32 tile per block.
uint32_t matrix_shared_bytes(MatrixShape t) {
  const uint32_t bm = 4 * t.m, bn = 4 * t.n, bk = 2 * t.k;
  return (bm * bk + bk * bn) * 2 + 4 * t.m * t.n * 4;
}

void choose_matrix_unit(DeviceProfile& p, const DeviceInfo& info, const DeviceProfile::Env& getenv) {
  const char* e = getenv("VKSD_MATRIX_UNIT");
  const std::string mode = e ? e : "";
  if (!mode.empty() && mode != "0" && mode != "1" && mode != "emulated")
    fail("VKSD_MATRIX_UNIT must be 0, 1 or emulated (got '" + mode + "')");
  if (mode == "0") return;
  if (mode == "emulated") {
    // Lane l of a subgroup holds elements l, l + subgroup, ... of each 8x8 tile.
    if (!info.fp16) fail("VKSD_MATRIX_UNIT=emulated needs a device with shaderFloat16");
    if (p.subgroup > 64) fail("VKSD_MATRIX_UNIT=emulated needs a subgroup size <= 64");
    p.matrix_unit = MatrixUnitApi::Emulated;
    p.matrix_shape = {8, 8, 8};
    p.matrix_workgroup = 4 * p.subgroup;  // one block per subgroup
    p.matrix_blocks_per_subgroup = 1;
    return;
  }
  if (info.matrix_unit.api == MatrixUnitApi::None) return;
  const MatrixShape t = choose_matrix_shape(info.matrix_unit.shapes);
  if (!t.m || matrix_shared_bytes(t) > info.max_shared_memory) return;
  p.matrix_unit = info.matrix_unit.api;
  p.matrix_shape = t;
  p.matrix_workgroup = 128;
  // A driver that may run the kernel with subgroups of up to S lanes gives 128 / S of them.
  const uint32_t fewest = std::max<uint32_t>(1, 128 / std::max<uint32_t>(1, info.max_subgroup_size));
  p.matrix_blocks_per_subgroup = (4 + fewest - 1) / fewest;
}

}  // namespace

DeviceProfile DeviceProfile::choose(const DeviceInfo& info, const Env& getenv) {
  DeviceProfile p;
  p.cpu = info.type == "CPU";
  p.gpu = info.type_rank >= 2;
  p.subgroup = info.subgroup_size ? info.subgroup_size : 8;
  const bool sg = p.cpu && info.subgroup_size > 0;  // measured on llvmpipe only
  p.gemm_shared_a = sg && !flag_from_env(getenv, "VKSD_GEMM_NO_SG");
  p.conv_shared_weights = sg && !flag_from_env(getenv, "VKSD_CONV_NO_SG");
  p.attention_shared_kv = sg && !flag_from_env(getenv, "VKSD_ATTN_NO_SG");
  p.gemm_tiles = tiles_from_env(getenv, "VKSD_GEMM_TILES");
  p.conv_tiles = tiles_from_env(getenv, "VKSD_CONV_TILES");
  p.conv_multi_row = p.cpu && !p.conv_tiles[0];  // forced tiles mean one-row blocks
  const uint32_t s = info.subgroup_size;
  p.norm_subgroup_rows = s >= 8 && (s & (s - 1)) == 0 && !flag_from_env(getenv, "VKSD_NORM_NO_RL");
  if (const char* e = getenv("VKSD_COMPACT_MFLOPS"); e && *e) {
    char* end = nullptr;
    const double v = std::strtod(e, &end);
    if (*end || !(v >= 0) || v > 1e9)
      fail(std::string("VKSD_COMPACT_MFLOPS must be a number of MFLOP >= 0 (got '") + e + "')");
    p.compact_conv_below_flops = p.compact_matmul_below_flops = v * 1e6;
  }
  if (const char* e = getenv("VKSD_PIPELINE_THREADS"); e && *e) {
    char tail = 0;
    if (std::sscanf(e, "%u%c", &p.pipeline_threads, &tail) != 1 || p.pipeline_threads == 0)
      fail(std::string("VKSD_PIPELINE_THREADS must be a positive integer (got '") + e + "')");
  }
  choose_matrix_unit(p, info, getenv);
  return p;
}

DeviceProfile DeviceProfile::choose(const DeviceInfo& info) {
  return choose(info, [](const char* name) -> const char* { return std::getenv(name); });
}

std::string DeviceProfile::describe() const {
  std::string s = cpu ? "cpu" : gpu ? "gpu" : "other";
  s += ", subgroup " + std::to_string(subgroup);
  auto tiles = [](const std::array<uint32_t, 4>& t) {
    return " " + std::to_string(t[0]) + "," + std::to_string(t[1]) + "," + std::to_string(t[2]) + "," + std::to_string(t[3]);
  };
  s += ", matmul";
  s += gemm_shared_a ? " SG" : " plain";
  if (gemm_tiles[0]) s += tiles(gemm_tiles);
  s += ", conv";
  s += conv_shared_weights ? " SG" : " plain";
  if (conv_multi_row) s += "+RB";
  if (conv_tiles[0]) s += tiles(conv_tiles);
  s += attention_shared_kv ? ", attention SG" : ", attention plain";
  s += norm_subgroup_rows ? ", norm RL" : ", norm plain";
  if (matrix_unit != MatrixUnitApi::None)
    s += std::string(", matrix unit ") + matrix_unit_name(matrix_unit) + " " + std::to_string(matrix_shape.m) + "x" +
         std::to_string(matrix_shape.n) + "x" + std::to_string(matrix_shape.k);
  return s;
}

}  // namespace vksd
