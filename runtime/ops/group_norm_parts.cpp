// GroupNorm's statistics and its normalisation as separate ops (shaders/group_norm_parts.comp).
// ops::group_norm (norm.comp) does both in one op; these let a tiled network (nn/vae_tiled.h)
// read each tile's statistics and normalise with statistics merged over all tiles instead.
#include <algorithm>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace vksd::ops {

namespace {

// group_norm_parts.comp's push constants and modes.
struct Push {
  uint32_t group_len, chunks, spatial, channels, n;
  float eps;
  uint32_t groups_x;
};
enum Mode : uint32_t { ChunkStats = 0, Combine = 1, Apply = 2 };

struct Geometry {
  int64_t n, c, spatial, group_len, total_groups;
};

Geometry geometry(const char* op, Tensor x, int groups) {
  if (x.rank() < 2) fail(std::string(op) + ": input " + shape_str(x.shape()) + " must be [N, C, ...]");
  Geometry g;
  g.n = x.dim(0), g.c = x.dim(1), g.spatial = x.numel() / (g.n * g.c);
  if (groups <= 0 || g.c % groups)
    fail(std::string(op) + ": " + std::to_string(g.c) + " channels do not split into " + std::to_string(groups) + " groups");
  if ((uint64_t)x.numel() >= (1ull << 32)) fail(std::string(op) + ": tensor " + shape_str(x.shape()) + " is too large");
  g.group_len = g.c / groups * g.spatial;
  g.total_groups = g.n * groups;
  return g;
}

}  // namespace

Tensor group_norm_stats(Tensor x, int groups, float eps) {
  Graph& g = *x.g;
  const Geometry geo = geometry("group_norm_stats", x, groups);
  // Chunks of WG x E elements, one workgroup each; a group's chunks along x, groups along y.
  const uint32_t wg = 64, e = 16;
  const uint64_t chunks = ((uint64_t)geo.group_len + wg * e - 1) / (wg * e);
  const auto& lim = g.device_info().max_workgroup_count;
  if (chunks > 60000 || chunks > lim[0] || (uint64_t)geo.total_groups > lim[1])
    fail("group_norm_stats: " + shape_str(x.shape()) + " has groups too large for the statistics pass");
  Tensor chunk_stats = g.temp({geo.total_groups * (int64_t)chunks * 3}, DType::F32);
  {
    Dispatch d;
    d.kernel = "group_norm_parts";
    d.label = "group_norm_stats";
    d.spec = {wg, ChunkStats, e, 0};
    d.args = {in(x), in(x), in(x), in(x), out(chunk_stats)};
    d.set_push(Push{(uint32_t)geo.group_len, (uint32_t)chunks, 0, 0, 0, eps, 0});
    d.groups[0] = (uint32_t)chunks;
    d.groups[1] = (uint32_t)geo.total_groups;
    g.add(std::move(d));
  }
  Tensor stats = g.temp({geo.total_groups * 2}, DType::F32);
  {
    Dispatch d;
    d.kernel = "group_norm_parts";
    d.label = "group_norm_combine";
    d.spec = {64, Combine, 1, 0};
    d.args = {in(x), in(x), in(x), in(chunk_stats), out(stats)};
    d.set_push(Push{(uint32_t)geo.group_len, (uint32_t)chunks, 0, 0, (uint32_t)geo.total_groups, eps, 0});
    d.groups[0] = (uint32_t)((geo.total_groups + 63) / 64);
    g.add(std::move(d));
  }
  return stats;
}

Tensor group_norm_apply(Tensor x, Tensor gamma, Tensor beta, Tensor stats, int groups, bool fuse_silu,
                        bool reuse_input) {
  Graph& g = *x.g;
  const Geometry geo = geometry("group_norm_apply", x, groups);
  if (gamma.numel() != geo.c || beta.numel() != geo.c)
    fail("group_norm_apply: gamma " + shape_str(gamma.shape()) + " / beta " + shape_str(beta.shape()) + " do not have " +
         std::to_string(geo.c) + " elements");
  if (stats.numel() != geo.total_groups * 2 || stats.dtype() != DType::F32)
    fail("group_norm_apply: statistics " + shape_str(stats.shape()) + " must be " +
         std::to_string(geo.total_groups * 2) + " fp32 values (mean, 1/std per sample and group)");
  Tensor y = reuse_input ? g.view(x, x.shape()) : g.temp(x.shape(), x.dtype());  // elementwise: in place is safe
  Grid grid = grid_1d(g, (uint64_t)x.numel(), 256);
  Dispatch d;
  d.kernel = "group_norm_parts";
  d.label = fuse_silu ? "group_norm_apply_silu" : "group_norm_apply";
  d.spec = {256, Apply, 1, fuse_silu ? 1u : 0u};
  d.args = {in(x), in(gamma), in(beta), in(stats), out(y)};
  d.set_push(Push{(uint32_t)geo.group_len, 0, (uint32_t)geo.spatial, (uint32_t)geo.c, (uint32_t)x.numel(), 0.f, grid.x});
  d.groups[0] = grid.x;
  d.groups[1] = grid.y;
  g.add(std::move(d));
  return y;
}

}  // namespace vksd::ops
