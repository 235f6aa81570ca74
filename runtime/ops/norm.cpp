// GroupNorm and LayerNorm (shaders/norm.comp): fp32 statistics, mean first, then the
// squared deviations from it; GroupNorm reduces in parallel over many workgroups.
#include <algorithm>

#include "runtime/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace vksd::ops {

namespace {

struct NormPush {
  uint32_t n, chunks, spatial, channels, group_len;
  float eps;
  uint32_t groups_x;
};

enum NormMode : uint32_t { ChunkStats = 0, Combine = 1, Apply = 2, LayerNorm = 3 };

void check_affine(const char* op, Tensor gamma, Tensor beta, int64_t c) {
  if (gamma.numel() != c || beta.numel() != c)
    fail(std::string(op) + ": gamma " + shape_str(gamma.shape()) + " / beta " + shape_str(beta.shape()) +
         " do not have " + std::to_string(c) + " elements");
}

}  // namespace

Tensor group_norm(Tensor x, Tensor gamma, Tensor beta, int groups, float eps, bool fuse_silu) {
  Graph& g = *x.g;
  if (x.rank() < 2) fail("group_norm: input " + shape_str(x.shape()) + " must be [N, C, ...]");
  const int64_t n = x.dim(0), c = x.dim(1), spatial = x.numel() / (n * c);
  if (groups <= 0 || c % groups)
    fail("group_norm: " + std::to_string(c) + " channels do not split into " + std::to_string(groups) + " groups");
  check_affine("group_norm", gamma, beta, c);
  const int64_t group_len = c / groups * spatial, total_groups = n * groups;
  if ((uint64_t)x.numel() >= (1ull << 32)) fail("group_norm: tensor " + shape_str(x.shape()) + " is too large");

  // 1. chunk statistics: WG invocations × E units each (vec4 units when a group is a whole
  //    number of vec4s, which also keeps every group's start vec4-aligned).
  // Few invocations with many units each: on lavapipe the cross-subgroup part of a workgroup
  // reduction costs per invocation, so small workgroups with long register runs are fastest.
  const uint32_t wg = 64, e = 16;
  const uint32_t lanes = group_len % 4 == 0 ? 4 : 1;
  const uint64_t chunk_elems = (uint64_t)wg * e * lanes;
  const uint64_t chunks = ((uint64_t)group_len + chunk_elems - 1) / chunk_elems;
  const auto& lim = g.context().info().max_workgroup_count;
  if (chunks > lim[0] || (uint64_t)total_groups > lim[1])
    fail("group_norm: " + shape_str(x.shape()) + " needs more workgroups than the device allows");
  Tensor chunk_stats = g.temp({total_groups * (int64_t)chunks * 3}, DType::F32);
  {
    Dispatch d;
    d.kernel = "norm";
    d.label = "group_norm_stats";
    d.spec = {wg, ChunkStats, lanes, e, 0};
    d.args = {in(x, (int)lanes), in(gamma), in(beta), in(x), out(chunk_stats)};
    d.set_push(NormPush{(uint32_t)group_len, (uint32_t)chunks, 0, 0, 0, eps, 0});
    d.groups[0] = (uint32_t)chunks;
    d.groups[1] = (uint32_t)total_groups;
    g.add(std::move(d));
  }
  // 2. per-group mean and 1/std (Chan's merge of the chunks).
  Tensor stats = g.temp({total_groups * 2}, DType::F32);
  {
    Dispatch d;
    d.kernel = "norm";
    d.label = "group_norm_combine";
    d.spec = {64, Combine, 1, 1, 0};
    d.args = {in(x), in(gamma), in(beta), in(chunk_stats), out(stats)};
    d.set_push(NormPush{(uint32_t)total_groups, (uint32_t)chunks, 0, 0, 0, eps, 0});
    d.groups[0] = (uint32_t)((total_groups + 63) / 64);
    g.add(std::move(d));
  }
  // 3. normalise, scale, shift (and SiLU).
  Tensor y = g.temp(x.shape(), x.dtype());
  {
    const uint32_t al = spatial % 4 == 0 ? 4 : 1;
    const uint64_t units = (uint64_t)x.numel() / al;
    Grid grid = grid_1d(g, units, 256);
    Dispatch d;
    d.kernel = "norm";
    d.label = fuse_silu ? "group_norm_silu" : "group_norm";
    d.spec = {256, Apply, al, 1, fuse_silu ? 1u : 0u};
    d.args = {in(x, (int)al), in(gamma), in(beta), in(stats), out(y, (int)al)};
    d.set_push(NormPush{(uint32_t)units, 0, (uint32_t)spatial, (uint32_t)c, (uint32_t)group_len, eps, grid.x});
    d.groups[0] = grid.x;
    d.groups[1] = grid.y;
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
  const uint32_t wg = 64;
  const uint64_t units = (uint64_t)c / lanes;
  const uint32_t e = (uint32_t)std::max<uint64_t>((units + wg - 1) / wg, 1);
  if (e > 64) fail("layer_norm: rows of " + std::to_string(c) + " elements are wider than supported (16384)");
  Tensor y = g.temp(x.shape(), x.dtype());
  Grid grid = grid_1d(g, (uint64_t)rows, 1);
  Dispatch d;
  d.kernel = "norm";
  d.label = "layer_norm";
  d.spec = {wg, LayerNorm, lanes, e, 0};
  d.args = {in(x, (int)lanes), in(gamma, (int)lanes), in(beta, (int)lanes), in(x), out(y, (int)lanes)};
  d.set_push(NormPush{(uint32_t)c, 0, 0, 0, 0, eps, grid.x});
  d.groups[0] = grid.x;
  d.groups[1] = grid.y;
  g.add(std::move(d));
  return y;
}

}  // namespace vksd::ops
