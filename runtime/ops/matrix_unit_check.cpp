// ops::check_matrix_unit: the same ops on the matrix unit and on the scalar kernels.
#include "runtime/ops/matrix_unit_check.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "runtime/gpu/context.h"
#include "runtime/ops.h"

namespace vksd::ops {
namespace {

// Deterministic data in [-1, 1) (the check must not depend on the run).
std::vector<float> pattern(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = (float)(s >> 8) / (float)(1u << 23) - 1.f;
  }
  return v;
}

struct Probe {
  const char* name;
  // Builds the op on `g` from inputs it creates, uploads nothing; returns the output.
  std::function<Tensor(Graph&, std::vector<std::pair<Tensor, std::vector<float>>>&)> build;
};

// Runs `probe` with the kernels `profile` chooses; `on_unit`, where given, says whether any of
// its dispatches used a matrix-unit kernel.
std::vector<float> run_probe(Context& ctx, const DeviceProfile& profile, const Probe& probe, bool* on_unit = nullptr) {
  Graph g(ctx);
  g.use_profile(profile);
  std::vector<std::pair<Tensor, std::vector<float>>> inputs;
  Tensor out = probe.build(g, inputs);
  if (on_unit) {
    *on_unit = false;
    for (const Dispatch& d : g.dispatches()) *on_unit = *on_unit || d.kernel.find("_coop") != std::string::npos;
  }
  g.keep(out);
  g.compile();
  for (auto& [t, data] : inputs) g.upload(t, data);
  g.run();
  return g.download(out);
}

Tensor input(Graph& g, std::vector<std::pair<Tensor, std::vector<float>>>& inputs, const Shape& shape) {
  Tensor t = g.input(shape, DType::F16);
  inputs.push_back({t, pattern((size_t)shape_numel(shape), (uint32_t)inputs.size() + 1)});
  return t;
}

Tensor attention_probe(Graph& g, std::vector<std::pair<Tensor, std::vector<float>>>& in, int64_t d, bool causal) {
  const int64_t heads = 2, lq = 45, lk = causal ? 45 : 77;
  Tensor q = input(g, in, {1, lq, heads * d}), k = input(g, in, {1, lk, heads * d}), v = input(g, in, {1, lk, heads * d});
  return attention(q, k, v, (int)heads, causal);
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return a.size() == b.size() ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
}

}  // namespace

MatrixUnitCheck check_matrix_unit(Context& ctx) {
  MatrixUnitCheck result;
  const DeviceProfile chosen = ctx.profile();
  if (chosen.matrix_unit == MatrixUnitApi::None || chosen.matrix_unit_checked) return result;
  DeviceProfile unit = chosen, scalar = chosen;
  unit.compact_conv_below_flops = unit.compact_matmul_below_flops = 0;  // small probes, SD's kernels
  scalar.matrix_unit = MatrixUnitApi::None;

  // Shapes off the tile grid (tails in M, N and K; padded head dims) and SD's head widths.
  const Probe probes[] = {
      {"linear", [](Graph& g, auto& in) { return linear(input(g, in, {2, 37, 96}), input(g, in, {70, 96}), input(g, in, {70})); }},
      {"conv2d 3x3", [](Graph& g, auto& in) {
         return conv2d(input(g, in, {1, 24, 19, 23}), input(g, in, {40, 24, 3, 3}), input(g, in, {40}), Conv2d::same(3));
       }},
      {"attention (head dim 40)", [](Graph& g, auto& in) { return attention_probe(g, in, 40, false); }},
      {"attention (head dim 160)", [](Graph& g, auto& in) { return attention_probe(g, in, 160, false); }},
      {"causal attention (head dim 64)", [](Graph& g, auto& in) { return attention_probe(g, in, 64, true); }},
  };
  std::string failure;
  for (const Probe& probe : probes) {
    MatrixUnitProbe r{probe.name};
    std::vector<float> got = run_probe(ctx, unit, probe, &r.on_unit);
    if (r.on_unit) {
      r.error = rel_l2(got, run_probe(ctx, scalar, probe));
      if (!(r.error <= 1e-2) && failure.empty()) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.3g", r.error);
        failure = r.op + " differs from the scalar kernel by " + buf + " relative L2";
      }
    }
    result.probes.push_back(r);
  }
  DeviceProfile kept = failure.empty() ? chosen : scalar;
  kept.matrix_unit_checked = true;
  ctx.set_profile(kept);
  if (!failure.empty())
    result.notice = "the matrix unit (" + std::string(matrix_unit_name(chosen.matrix_unit)) +
                    " cooperative matrix) failed its check on this device: " + failure +
                    "; using the scalar kernels (VKSD_MATRIX_UNIT=0 skips the check)";
  return result;
}

}  // namespace vksd::ops
