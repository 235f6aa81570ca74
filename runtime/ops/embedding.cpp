// Embeddings: the sinusoidal timestep embedding (shaders/timestep_embedding.comp) and the
// token + position lookup of the text encoder (shaders/embedding.comp).
#include <cmath>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/ops.h"

namespace vksd::ops {

Tensor timestep_embedding(Tensor t, int dim, float max_period) {
  Graph& g = *t.g;
  if (dim <= 1) fail("timestep_embedding: dim " + std::to_string(dim) + " is too small");
  if (!(max_period > 1.f)) fail("timestep_embedding: max_period must be > 1");
  if (dim / 2 >= 4096) fail("timestep_embedding: dim " + std::to_string(dim) + " is too large (at most 8191)");
  if (t.dtype() == DType::I32) fail("timestep_embedding: t must be a float tensor");
  const int64_t n = t.numel();
  Tensor y = g.temp({n, dim}, t.dtype());
  struct {
    uint32_t n, dim, half_dim;
    float neg_log_period;
  } p{(uint32_t)(n * dim), (uint32_t)dim, (uint32_t)(dim / 2), (float)(-std::log((double)max_period))};
  Dispatch d;
  d.kernel = "timestep_embedding";
  d.args = {in(t), out(y)};
  d.set_push(p);
  d.groups[0] = (uint32_t)((n * dim + 63) / 64);
  g.add(std::move(d));
  return y;
}

Tensor token_embedding(Tensor ids, Tensor table, Tensor pos) {
  Graph& g = *ids.g;
  if (ids.dtype() != DType::I32) fail("token_embedding: ids must be i32, got " + std::string(dtype_name(ids.dtype())));
  if (ids.rank() != 2) fail("token_embedding: ids " + shape_str(ids.shape()) + " must be [B, L]");
  if (table.rank() != 2 || pos.rank() != 2 || pos.dim(1) != table.dim(1))
    fail("token_embedding: table " + shape_str(table.shape()) + " and positions " + shape_str(pos.shape()) +
         " must be [V, D] and [L, D]");
  const int64_t b = ids.dim(0), l = ids.dim(1), d = table.dim(1), vocab = table.dim(0);
  if (pos.dim(0) < l)
    fail("token_embedding: " + std::to_string(l) + " tokens but only " + std::to_string(pos.dim(0)) + " positions");
  Tensor y = g.temp({b, l, d}, table.dtype());
  const int lanes = d % 4 == 0 ? 4 : 1;
  const uint64_t units = (uint64_t)(b * l * d) / lanes;
  Grid grid = grid_1d(g, units, 256);
  struct {
    uint32_t n, width, len, vocab, groups_x;
  } p{(uint32_t)units, (uint32_t)(d / lanes), (uint32_t)l, (uint32_t)vocab, grid.x};
  Dispatch dsp;
  dsp.kernel = "embedding";
  dsp.label = "token_embedding";
  dsp.spec = {(uint32_t)lanes};
  dsp.args = {in(ids), in(table, lanes), in(pos, lanes), out(y, lanes)};
  dsp.set_push(p);
  dsp.groups[0] = grid.x;
  dsp.groups[1] = grid.y;
  g.add(std::move(dsp));
  return y;
}

}  // namespace vksd::ops
