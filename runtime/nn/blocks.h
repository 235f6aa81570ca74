// Shared building blocks of the three Stable Diffusion networks, composed from vksd::ops.
//
//   Scope        names weights like the checkpoint does: Scope::root(g, w, kUNetPrefix).sub("out")
//                .w("0.weight") binds "model.diffusion_model.out.0.weight" into the graph.
//   NetOptions   what every network takes besides its weights and geometry.
//   linear / conv / group_norm / layer_norm bound to a weight prefix, so that a network's code
//   reads like the PyTorch module it mirrors.
#pragma once
#include <optional>
#include <string>

#include "runtime/gpu/graph.h"
#include "runtime/ops.h"
#include "runtime/model/weights.h"

namespace vksd::nn {

struct NetOptions {
  // Storage type of activations; unset = the weights' storage type (F32 for parity runs, F16 to
  // halve activation memory). Arithmetic is fp32 either way.
  std::optional<DType> activations;
  // UNet: keep every block's output alive so that block_output() can read it (tests, debugging).
  bool keep_blocks = false;
  // UNet: also compute, for every cross-attention layer (attn2 of every transformer block), the
  // attention probabilities of the last batch entry (the prompt under guidance), mean over
  // heads: UNet::attention_layers() / attention_probs(). Off (the default) adds nothing to the
  // graph: no dispatch, no memory.
  bool attention_maps = false;
  // Compile with timestamp queries so that timings() reports per-dispatch times.
  bool profile = false;
};

// A weight-name prefix within a WeightStore, bound to the graph being built.
class Scope {
 public:
  Scope(Graph& g, const WeightStore& w, std::string prefix) : g_(g), w_(w), prefix_(std::move(prefix)) {}
  // A network's root scope from its checkpoint key prefix (model/network_prefixes.h, "a.b.").
  static Scope root(Graph& g, const WeightStore& w, std::string key_prefix) {
    if (!key_prefix.empty() && key_prefix.back() == '.') key_prefix.pop_back();
    return Scope(g, w, std::move(key_prefix));
  }
  Scope sub(const std::string& name) const { return Scope(g_, w_, join(name)); }
  Scope sub(int index) const { return sub(std::to_string(index)); }
  // The tensor `prefix.name`, checked against `expect` when given.
  Tensor w(const std::string& name, const Shape& expect = {}) const { return w_.bind(g_, join(name), expect); }
  bool has(const std::string& name) const { return w_.has(join(name)); }
  Shape shape(const std::string& name) const { return w_.get(join(name)).shape; }
  const std::string& prefix() const { return prefix_; }
  // "'prefix.name'" for error messages.
  std::string quoted(const std::string& name = "") const {
    std::string r(1, '\'');
    r.append(name.empty() ? prefix_ : join(name));
    r.push_back('\'');
    return r;
  }
  Graph& graph() const { return g_; }
  const WeightStore& weights() const { return w_; }

 private:
  std::string join(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  Graph& g_;
  const WeightStore& w_;
  std::string prefix_;
};

// nn.Linear at `s`: x [..., in] -> [..., out]; the bias is used when the checkpoint has one.
// With `residual` (the output's shape) it is added in the same kernel: y = linear(x) + residual.
Tensor linear(const Scope& s, Tensor x, Tensor residual = {});
// A 1x1 nn.Conv2d applied to a token sequence [B, L, C] as the linear layer it is.
Tensor conv1x1_as_linear(const Scope& s, Tensor x);
// nn.Conv2d at `s` with the given padding/stride (kernel size from the weight); `residual`
// (the output's shape), when given, is added in the same kernel.
Tensor conv(const Scope& s, Tensor x, ops::Conv2d p, Tensor residual = {});
inline Tensor conv3x3(const Scope& s, Tensor x, Tensor residual = {}) {
  return conv(s, x, ops::Conv2d::same(3), residual);
}
inline Tensor conv1x1(const Scope& s, Tensor x) { return conv(s, x, ops::Conv2d{}); }
// nn.GroupNorm(32, C) at `s`, optionally followed by SiLU (fused).
Tensor group_norm(const Scope& s, Tensor x, float eps, bool silu);
// nn.LayerNorm at `s` over the last dimension.
Tensor layer_norm(const Scope& s, Tensor x, float eps);

// Multi-head attention over token sequences given already projected q [B, Lq, C] and k/v
// [B, Lk, C]; the per-head scale is 1/sqrt(C / heads).
inline Tensor multi_head_attention(Tensor q, Tensor k, Tensor v, int heads, bool causal = false) {
  return ops::attention(q, k, v, heads, causal);
}

}  // namespace vksd::nn
