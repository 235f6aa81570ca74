// DeviceProfile: which kernel variants suit the device, decided once when the Context is
// created, so that ops read flags instead of testing vendor strings or the environment.
//
// The choice follows DeviceInfo (device type, subgroup size). Environment overrides, for
// benchmarking variants against each other, are read here and nowhere else
// (docs/cli.md, "Environment", lists them):
//   VKSD_GEMM_TILES=tm,tn,wx,wy   matmul register tile (tm x tn) and workgroup (wx x wy)
//   VKSD_CONV_TILES=tm,tn,px,cy   conv2d register tile, pixel blocks and channel groups
//   VKSD_GEMM_NO_SG=1, VKSD_CONV_NO_SG=1, VKSD_ATTN_NO_SG=1, VKSD_NORM_NO_RL=1
//                                 switch the subgroup-sharing variants off
//   VKSD_COMPACT_MFLOPS=X         convolutions and matmuls below X MFLOP take the compact variant
//                                 (both bounds; 0 = none)
//   VKSD_PIPELINE_THREADS=N       threads creating pipelines (1 = one after another)
//   VKSD_MATRIX_UNIT=0|emulated   0: never the matrix unit; emulated: its kernel with plain loops
//                                 (any device with fp16; for testing and comparison)
// A malformed value is an Error naming the variable (never silently ignored).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>

#include "runtime/gpu/matrix_unit.h"

namespace vksd {

struct DeviceInfo;

struct DeviceProfile {
  // A CPU driver (llvmpipe): each invocation is one SIMD lane of a CPU thread, consecutive x
  // invocations share a vector, texel fetches (not FMAs) are the cost and a barrier is a
  // coroutine switch: big register tiles, no shared-memory tiling.
  bool cpu = false;
  bool gpu = false;        // a discrete, integrated or virtual GPU (attention: more invocations)
  uint32_t subgroup = 0;   // subgroup size the kernels assume (8 when the device does not say)
  // Lanes of a subgroup split the fetches they share and pass values on with subgroupShuffle.
  // Enabled where measured (llvmpipe, subgroup 8).
  bool gemm_shared_a = false;        // matmul.comp SG: rows of A
  bool conv_shared_weights = false;  // conv2d.comp SG: weights
  bool attention_shared_kv = false;  // attention.comp SG: keys and values
  bool conv_multi_row = false;       // conv2d.comp RB: multi-row blocks when a subgroup can't be filled
  bool norm_subgroup_rows = false;   // norm.comp: rows reduced by 8 lanes of a subgroup
  // Convolutions and matmuls below these many floating-point operations (2 x MACs) take one
  // compact variant (small register tile, none of the tuned fetch paths) instead of a tuned
  // one: on a small network (the demo model; SD's conv_in/conv_out) a tuned variant's compile
  // time — lavapipe JIT-compiles each pipeline at its first dispatch, ~1 s for a large unrolled
  // tile — is worth more than its speed-up, and every distinct tuned variant is another compile.
  // The bounds keep every sizeable op of SD 1.5 at 256x256 tuned (measured: at 200 MFLOP for
  // both, its UNet step took 3.85 s instead of 3.00 s) and the whole demo model compact.
  double compact_conv_below_flops = 1e8;    // VKSD_COMPACT_MFLOPS
  double compact_matmul_below_flops = 2e7;  // VKSD_COMPACT_MFLOPS
  // Register tiles forced by VKSD_GEMM_TILES / VKSD_CONV_TILES, or all zero (chosen per op).
  std::array<uint32_t, 4> gemm_tiles{}, conv_tiles{};
  uint32_t pipeline_threads = 0;  // VKSD_PIPELINE_THREADS, 0 = one per core
  // The matrix unit (matrix_unit.h): GEMMs and convolutions whose operands are stored in fp16
  // run on shaders/matmul_coop.comp where the driver offers cooperative matrices.
  MatrixUnitApi matrix_unit = MatrixUnitApi::None;
  MatrixShape matrix_shape;              // the tile the kernel is specialised for
  uint32_t matrix_workgroup = 0;         // invocations per workgroup (4 subgroup blocks)
  uint32_t matrix_blocks_per_subgroup = 1;  // 4 / the fewest subgroups a workgroup may have
  // Set once ops::check_matrix_unit (runtime/ops/matrix_unit_check.h) has compared the matrix
  // unit's results with the scalar kernels' on this device: it runs once per Context.
  bool matrix_unit_checked = false;

  // `getenv` is the environment to read overrides from (tests pass their own).
  using Env = std::function<const char*(const char*)>;
  static DeviceProfile choose(const DeviceInfo& info, const Env& getenv);
  static DeviceProfile choose(const DeviceInfo& info);  // the process environment

  // One line for `vksd devices`: "cpu, subgroup 8, matmul SG, conv SG+RB, attention SG, norm RL"
  // (and ", matrix unit KHR 16x16x16" where one is used).
  std::string describe() const;
};

}  // namespace vksd
