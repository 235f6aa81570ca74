// Shared building blocks of the three Stable Diffusion networks, composed from vksd::ops.
//
//   Scope        names weights like the checkpoint does: Scope::root(g, w, kUNetPrefix).sub("out")
//                .w("0.weight", shape) binds "model.diffusion_model.out.0.weight" into the graph.
//   WeightSource where the weights come from: the device (DeviceWeights) or a dry run that
//                records the layout (LayoutRecorder).
//   NetOptions   what every network takes besides its weights and geometry.
//   linear / conv / group_norm / layer_norm bound to a weight prefix, so that a network's code
//   reads like the PyTorch module it mirrors; like the module's constructor, each states its
//   weights' shapes (nn.Linear(in, out): in from the input, out given).
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/gpu/graph.h"
#include "runtime/gpu/scratch_arena.h"
#include "runtime/ops.h"
#include "runtime/model/sd1_layout.h"
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
  // Intermediates in an arena shared with the other networks of a pipeline, which never run
  // at the same time (runtime/gpu/scratch_arena.h); null = the network's own arena.
  std::shared_ptr<ScratchArena> scratch;
};

// Where a network's weights come from while its graph is recorded. The builders state every
// weight's shape from the config (and the shapes flowing through the graph), so one builder
// serves two purposes:
//   DeviceWeights   the checkpoint's tensors on the device, bound into the graph and checked;
//   LayoutRecorder  a dry run on a shapes-only Graph (no device) that lists the tensors the
//                   network needs, in the order it uses them: the checkpoint layout
//                   (unet_layout / vae_layout / clip_layout, runtime/model/sd1_layout.h).
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The tensor `name`, which must have shape `shape`, as a tensor of `g`.
  virtual Tensor bind(Graph& g, const std::string& name, const Shape& shape) const = 0;
  // The type weights are stored in (activations default to it).
  virtual DType storage() const = 0;
};

// A WeightStore's tensors: a missing tensor or another shape is an Error naming the tensor and
// both shapes (WeightStore::get).
class DeviceWeights final : public WeightSource {
 public:
  explicit DeviceWeights(const WeightStore& w) : w_(w) {}
  Tensor bind(Graph& g, const std::string& name, const Shape& shape) const override { return w_.bind(g, name, shape); }
  DType storage() const override { return w_.storage(); }

 private:
  const WeightStore& w_;
};

// Records {name, shape} of every weight asked for (once per name) and hands back a placeholder
// of that shape; meant for a shapes-only Graph.
class LayoutRecorder final : public WeightSource {
 public:
  Tensor bind(Graph& g, const std::string& name, const Shape& shape) const override;
  DType storage() const override { return DType::F32; }
  const std::vector<TensorSpec>& specs() const { return specs_; }

 private:
  mutable std::vector<TensorSpec> specs_;
  mutable std::map<std::string, Shape> seen_;
};

// A weight-name prefix within a WeightSource, bound to the graph being built.
class Scope {
 public:
  Scope(Graph& g, const WeightSource& w, std::string prefix) : g_(g), w_(w), prefix_(std::move(prefix)) {}
  // A network's root scope from its checkpoint key prefix (model/network_prefixes.h, "a.b.").
  static Scope root(Graph& g, const WeightSource& w, std::string key_prefix) {
    if (!key_prefix.empty() && key_prefix.back() == '.') key_prefix.pop_back();
    return Scope(g, w, std::move(key_prefix));
  }
  Scope sub(const std::string& name) const { return Scope(g_, w_, join(name)); }
  Scope sub(int index) const { return sub(std::to_string(index)); }
  // The tensor `prefix.name` of shape `shape`.
  Tensor w(const std::string& name, const Shape& shape) const { return w_.bind(g_, join(name), shape); }
  const std::string& prefix() const { return prefix_; }
  Graph& graph() const { return g_; }

 private:
  std::string join(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  Graph& g_;
  const WeightSource& w_;
  std::string prefix_;
};

// nn.Linear(in, out) at `s` (in = x's last dimension): x [..., in] -> [..., out]. With
// `residual` (the output's shape) it is added in the same kernel: y = linear(x) + residual.
Tensor linear(const Scope& s, Tensor x, int64_t out, Tensor residual = {});
// nn.Linear(in, out, bias=False).
Tensor linear_without_bias(const Scope& s, Tensor x, int64_t out);
// A 1x1 nn.Conv2d(in, out) (weight [out, in, 1, 1]) applied to a token sequence [B, L, in] as
// the linear layer it is.
Tensor conv1x1_as_linear(const Scope& s, Tensor x, int64_t out);
// nn.Conv2d(in, out, k) at `s` (in = x's channels) with the given padding/stride; `residual`
// (the output's shape), when given, is added in the same kernel.
Tensor conv(const Scope& s, Tensor x, int64_t out, int k, ops::Conv2d p, Tensor residual = {});
inline Tensor conv3x3(const Scope& s, Tensor x, int64_t out, Tensor residual = {}) {
  return conv(s, x, out, 3, ops::Conv2d::same(3), residual);
}
inline Tensor conv1x1(const Scope& s, Tensor x, int64_t out) { return conv(s, x, out, 1, ops::Conv2d{}); }
// nn.GroupNorm(32, C) at `s` (C = x's channels), optionally followed by SiLU (fused).
Tensor group_norm(const Scope& s, Tensor x, float eps, bool silu, bool reuse_input = false);  // ops::group_norm
// nn.LayerNorm(C) at `s` over the last dimension.
Tensor layer_norm(const Scope& s, Tensor x, float eps);

// Multi-head attention over token sequences given already projected q [B, Lq, C] and k/v
// [B, Lk, C]; the per-head scale is 1/sqrt(C / heads).
inline Tensor multi_head_attention(Tensor q, Tensor k, Tensor v, int heads, bool causal = false) {
  return ops::attention(q, k, v, heads, causal);
}

}  // namespace vksd::nn
