// GroupNorm and LayerNorm (shaders/norm.comp): fp32 statistics, mean first, then the
// squared deviations from it; GroupNorm reduces in parallel over many workgroups.
#include <algorithm>
#include <cstdlib>
#include <optional>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace vksd::ops {

namespace {

struct NormPush {
  uint32_t n, chunks, spatial, channels, group_len;
  float eps;
  uint32_t groups_x;
  uint32_t rows;
  uint32_t groups_per_image;
};

enum NormMode : uint32_t { ChunkStats = 0, Combine = 1, Apply = 2, LayerNorm = 3, GroupNormFused = 4 };

// How a row of `units` units (MODE 3/4) is spread: RL lanes of a subgroup per row with an
// xor-shuffle reduction (no barriers; several rows per workgroup), or a whole workgroup of WG
// invocations per row. E units per invocation are held in registers.
struct RowPlan { uint32_t wg, rl, e; };
constexpr uint32_t kMaxUnitsPerLane = 64;

std::optional<RowPlan> row_plan(Graph& g, uint64_t units, uint32_t wg_lanes, uint32_t wg_max_e) {
  const DeviceProfile& prof = g.profile();
  const uint32_t sg = prof.subgroup;
  const uint32_t rl = 8;  // 8 lanes: a whole subgroup on llvmpipe, an aligned part of one elsewhere
  if (prof.norm_subgroup_rows && units <= (uint64_t)rl * kMaxUnitsPerLane)
    return RowPlan{std::max<uint32_t>(64, sg), rl, (uint32_t)((units + rl - 1) / rl)};
  if (units <= (uint64_t)wg_lanes * wg_max_e) return RowPlan{wg_lanes, 0, (uint32_t)std::max<uint64_t>((units + wg_lanes - 1) / wg_lanes, 1)};
  return std::nullopt;
}

// Dispatch size for `rows` rows under `plan`.
Grid row_grid(Graph& g, uint64_t rows, const RowPlan& plan) {
  return grid_1d(g, rows, plan.rl ? plan.wg / plan.rl : 1);
}

void check_affine(const char* op, Tensor gamma, Tensor beta, int64_t c) {
  if (gamma.numel() != c || beta.numel() != c)
    fail(std::string(op) + ": gamma " + shape_str(gamma.shape()) + " / beta " + shape_str(beta.shape()) +
         " do not have " + std::to_string(c) + " elements");
}

}  // namespace

Tensor group_norm(Tensor x, Tensor gamma, Tensor beta, int groups, float eps, bool fuse_silu, bool reuse_input) {
  Graph& g = *x.g;
  if (x.rank() < 2) fail("group_norm: input " + shape_str(x.shape()) + " must be [N, C, ...]");
  const int64_t n = x.dim(0), c = x.dim(1), spatial = x.numel() / (n * c);
  if (groups <= 0 || c % groups)
    fail("group_norm: " + std::to_string(c) + " channels do not split into " + std::to_string(groups) + " groups");
  check_affine("group_norm", gamma, beta, c);
  const int64_t group_len = c / groups * spatial, total_groups = n * groups;
  if ((uint64_t)x.numel() >= (1ull << 32)) fail("group_norm: tensor " + shape_str(x.shape()) + " is too large");

  // Small groups (up to 8 lanes x 64 units, e.g. all of the demo UNet's): statistics and output
  // in one dispatch, the group held in the registers of 8 lanes. Only the subgroup variant: a
  // whole workgroup per group (barriers) measured slower than the three passes below (SD 1.5's
  // 320 x 64x64 at batch 2: 45 vs 12 ms on llvmpipe).
  {
    const uint32_t lanes = spatial % 4 == 0 ? 4 : 1;  // a unit stays within one channel
    if (auto plan = row_plan(g, (uint64_t)group_len / lanes, 256, /*no workgroup variant*/ 0)) {
      Tensor y = reuse_input ? g.view(x, x.shape()) : g.temp(x.shape(), x.dtype());
      Grid grid = row_grid(g, (uint64_t)total_groups, *plan);
      Dispatch d;
      d.kernel = "norm";
      d.label = fuse_silu ? "group_norm_silu" : "group_norm";
      d.spec = {plan->wg, GroupNormFused, lanes, plan->e, fuse_silu ? 1u : 0u, plan->rl};
      d.args = {in(x, (int)lanes), in(gamma), in(beta), in(x), out(y, (int)lanes)};
      d.set_push(NormPush{(uint32_t)group_len, 0, (uint32_t)spatial, (uint32_t)c, (uint32_t)group_len, eps, grid.x,
                          (uint32_t)total_groups});
      d.groups[0] = grid.x;
      d.groups[1] = grid.y;
      g.add(std::move(d));
      return y;
    }
  }

  // 1. chunk statistics, each chunk reduced by RL lanes (or a workgroup) holding E units each
  //    (vec4 units when a group is a whole number of vec4s, which also keeps every group's start
  //    vec4-aligned). Chunks are many and small: on llvmpipe the workgroup-wide part of a
  //    reduction (barriers) costs per invocation, so subgroup-only reductions are fastest.
  const uint32_t lanes = group_len % 4 == 0 ? 4 : 1;
  const RowPlan plan = row_plan(g, 16 * 8, 64, 16).value_or(RowPlan{64, 0, 16});
  const uint64_t chunk_units = (uint64_t)(plan.rl ? plan.rl : plan.wg) * plan.e;
  const uint64_t chunks = ((uint64_t)group_len / lanes + chunk_units - 1) / chunk_units;
  // combine() loops over a group's chunks in one invocation (lavapipe's loop budget).
  if (chunks > 60000 || (uint64_t)total_groups * chunks >= (1ull << 32))
    fail("group_norm: " + shape_str(x.shape()) + " has groups too large for the statistics pass");
  Tensor chunk_stats = g.temp({total_groups * (int64_t)chunks * 3}, DType::F32);
  {
    Grid grid = row_grid(g, (uint64_t)total_groups * chunks, plan);
    Dispatch d;
    d.kernel = "norm";
    d.label = "group_norm_stats";
    d.spec = {plan.wg, ChunkStats, lanes, plan.e, 0, plan.rl};
    d.args = {in(x, (int)lanes), in(gamma), in(beta), in(x), out(chunk_stats)};
    d.set_push(NormPush{(uint32_t)group_len, (uint32_t)chunks, 0, 0, 0, eps, grid.x,
                        (uint32_t)(total_groups * chunks)});
    d.groups[0] = grid.x;
    d.groups[1] = grid.y;
    g.add(std::move(d));
  }
  // 2. per-group mean and 1/std (Chan's merge of the chunks).
  Tensor stats = g.temp({total_groups * 2}, DType::F32);
  {
    Dispatch d;
    d.kernel = "norm";
    d.label = "group_norm_combine";
    d.spec = {64, Combine, 1, 1, 0, 0};
    d.args = {in(x), in(gamma), in(beta), in(chunk_stats), out(stats)};
    d.set_push(NormPush{(uint32_t)total_groups, (uint32_t)chunks, 0, 0, 0, eps, 0, 0});
    d.groups[0] = (uint32_t)((total_groups + 63) / 64);
    g.add(std::move(d));
  }
  // 3. normalise, scale, shift (and SiLU): one workgroup row per (image, channel) plane.
  Tensor y = reuse_input ? g.view(x, x.shape()) : g.temp(x.shape(), x.dtype());
  {
    const uint32_t al = spatial % 4 == 0 ? 4 : 1;
    const uint32_t wg = 64, e = 16;
    const uint64_t plane_units = (uint64_t)spatial / al;
    const uint64_t blocks = (plane_units + (uint64_t)wg * e - 1) / ((uint64_t)wg * e);
    const auto& lim = g.device_info().max_workgroup_count;
    if (blocks > lim[0] || (uint64_t)(n * c) > lim[1])
      fail("group_norm: " + shape_str(x.shape()) + " needs more workgroups than the device allows");
    Dispatch d;
    d.kernel = "norm";
    d.label = fuse_silu ? "group_norm_silu" : "group_norm";
    d.spec = {wg, Apply, al, e, fuse_silu ? 1u : 0u, 0};
    d.args = {in(x, (int)al), in(gamma), in(beta), in(stats), out(y, (int)al)};
    NormPush pc{0, 0, (uint32_t)spatial, (uint32_t)c, (uint32_t)group_len, eps, 0, 0};
    pc.groups_per_image = (uint32_t)groups;
    d.set_push(pc);
    d.groups[0] = (uint32_t)blocks;
    d.groups[1] = (uint32_t)(n * c);
    g.add(std::move(d));
  }
  return y;
}

Tensor layer_norm(Tensor x, Tensor gamma, Tensor beta, float eps) {
  Graph& g = *x.g;
  if (x.rank() < 1) fail("layer_norm: input has no dimensions");
  const int64_t c = x.dim(-1), rows = x.numel() / c;
  check_affine("layer_norm", gamma, beta, c);
  const uint32_t lanes = c % 4 == 0 ? 4 : 1;
  const uint64_t units = (uint64_t)c / lanes;
  auto plan = row_plan(g, units, 64, kMaxUnitsPerLane);
  if (!plan) fail("layer_norm: rows of " + std::to_string(c) + " elements are wider than supported (16384)");
  if ((uint64_t)x.numel() >= (1ull << 32)) fail("layer_norm: tensor " + shape_str(x.shape()) + " is too large");
  Tensor y = g.temp(x.shape(), x.dtype());
  Grid grid = row_grid(g, (uint64_t)rows, *plan);
  Dispatch d;
  d.kernel = "norm";
  d.label = "layer_norm";
  d.spec = {plan->wg, LayerNorm, lanes, plan->e, 0, plan->rl};
  d.args = {in(x, (int)lanes), in(gamma, (int)lanes), in(beta, (int)lanes), in(x), out(y, (int)lanes)};
  d.set_push(NormPush{(uint32_t)c, 0, 0, 0, 0, eps, grid.x, (uint32_t)rows});
  d.groups[0] = grid.x;
  d.groups[1] = grid.y;
  g.add(std::move(d));
  return y;
}

}  // namespace vksd::ops
