// The Stable Diffusion operator library. Each op appends one (or a few) dispatches of one
// shader family (shaders/<family>.comp) to the graph its inputs belong to and returns the
// output tensor. Layouts follow PyTorch: images NCHW, token sequences [B, L, C], linear
// weights [out, in], conv weights [Cout, Cin, kh, kw]. Outputs take the dtype of the first
// input; all arithmetic is fp32.
#pragma once
#include "runtime/gpu/graph.h"

namespace vksd::ops {

// ---- elementwise (eltwise.comp) ----
enum class Act { None = 0, SiLU = 1, GELU = 2, QuickGELU = 3 };
Tensor add(Tensor a, Tensor b, Act act = Act::None);   // same numel
Tensor sub(Tensor a, Tensor b);
Tensor mul(Tensor a, Tensor b);                       // same numel
Tensor scale(Tensor a, float s);
Tensor activation(Tensor x, Act act);
inline Tensor silu(Tensor x) { return activation(x, Act::SiLU); }
inline Tensor gelu(Tensor x) { return activation(x, Act::GELU); }
inline Tensor quick_gelu(Tensor x) { return activation(x, Act::QuickGELU); }
// x[n, c, ...] + v[n, c]: e.g. a ResBlock's time-embedding projection added to every pixel.
Tensor add_per_channel(Tensor x, Tensor v);
// a * alpha + b * beta (b same numel as a).
Tensor axpby(Tensor a, float alpha, Tensor b, float beta);

// ---- linear algebra (matmul.comp, conv2d.comp) ----
// x [..., K] · wᵀ + b, w [N, K], b [N] (optional) -> [..., N]
Tensor linear(Tensor x, Tensor w, Tensor b = {});
// The same with a residual of the output's shape added in the epilogue (y = x·wᵀ + b + residual).
Tensor linear(Tensor x, Tensor w, Tensor b, Tensor residual);
// Batched a [B, M, K] · b [B, K, N] (or bᵀ with b [B, N, K] when trans_b) -> [B, M, N].
Tensor matmul(Tensor a, Tensor b, bool trans_b);
struct Conv2d {
  int stride = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  static Conv2d same(int k) { int p = k / 2; return {1, p, p, p, p}; }
  static Conv2d down() { return {2, 1, 1, 1, 1}; }              // UNet Downsample
  static Conv2d down_asym() { return {2, 0, 1, 0, 1}; }         // VAE Encoder Downsample
};
// x [N, Ci, H, W], w [Co, Ci, kh, kw], b [Co] (optional) -> [N, Co, Ho, Wo]
Tensor conv2d(Tensor x, Tensor w, Tensor b, Conv2d p);
// The same with a residual [N, Co, Ho, Wo] added in the epilogue (a ResBlock's conv + skip).
Tensor conv2d(Tensor x, Tensor w, Tensor b, Conv2d p, Tensor residual);

// ---- normalisation (norm.comp) ----
// x [N, C, ...] over (C/groups × spatial); gamma/beta [C]. Optional fused SiLU.
// reuse_input: the caller never reads x again, so the result overwrites it (each element is
// read, then written, by the same invocation) instead of taking a second tensor of its size.
Tensor group_norm(Tensor x, Tensor gamma, Tensor beta, int groups, float eps, bool fuse_silu, bool reuse_input = false);
// GroupNorm in its two halves (ops/group_norm_parts.cpp), for networks run in tiles that must
// normalise with statistics of the whole image: the statistics of x per (sample, group),
// [N * groups * 2] fp32 = (mean, 1/sqrt(var + eps)) ...
Tensor group_norm_stats(Tensor x, int groups, float eps);
// ... and x normalised with statistics in that layout (e.g. a graph input), then scaled and
// shifted (and SiLU). reuse_input as in group_norm.
Tensor group_norm_apply(Tensor x, Tensor gamma, Tensor beta, Tensor stats, int groups, bool fuse_silu,
                        bool reuse_input = false);
// over the last dimension; gamma/beta [C]
Tensor layer_norm(Tensor x, Tensor gamma, Tensor beta, float eps);

// ---- attention (attention.comp) ----
// softmax(q kᵀ · scale) v per head. q [B, Lq, H*D], k/v [B, Lk, H*D] -> [B, Lq, H*D].
// `causal`: query i sees keys 0..i (CLIP). scale defaults to 1/sqrt(D).
Tensor attention(Tensor q, Tensor k, Tensor v, int heads, bool causal = false, float scale = 0);
// The probabilities that attention() weights v with, which it never stores: for batch entry
// `b` of q [B, Lq, H*D] and k [B, Lk, H*D], P[j, i] = mean over heads of softmax_j(q_i · k_j ·
// scale) -> [Lk, Lq] fp32, token-major (one key's map over the queries is contiguous). One
// small dispatch (attention_probs.comp); the UNet adds it per cross-attention layer only when
// asked (NetOptions::attention_maps).
Tensor attention_probs(Tensor q, Tensor k, int heads, int64_t b, float scale = 0);

// ---- feed-forward pieces ----
// x [..., 2D] -> a * gelu(g), (a, g) = split(x, 2, dim=-1): the GEGLU of SD's FeedForward.
Tensor geglu(Tensor x);

// ---- layout (layout.comp) ----
Tensor upsample_nearest2x(Tensor x);             // [N, C, H, W] -> [N, C, 2H, 2W]
Tensor concat_channels(Tensor a, Tensor b);      // NCHW along C
Tensor nchw_to_nlc(Tensor x);                    // [N, C, H, W] -> [N, H*W, C]
Tensor nlc_to_nchw(Tensor x, int64_t h, int64_t w);  // [N, H*W, C] -> [N, C, H, W]
// rows [r0, r0 + n) of the second-to-last... general slice along dim 0 (batch)
Tensor slice_batch(Tensor x, int64_t begin, int64_t count);

// ---- embeddings (embedding.comp) ----
// t [N] (f32, may be fractional) -> [N, dim]: [cos(t f_i), sin(t f_i)], f_i = exp(-ln(max_period) i / half)
Tensor timestep_embedding(Tensor t, int dim, float max_period = 10000.f);
// ids [B, L] (i32) -> table[ids] + pos[0..L) : [B, L, D]
Tensor token_embedding(Tensor ids, Tensor table, Tensor pos);

// Dispatch helper: workgroup counts for n items, `per_group` each, split over x and y so
// that no dimension exceeds the device limit. Shaders get `groups_x` to rebuild the index.
struct Grid { uint32_t x, y; };
Grid grid_1d(Graph& g, uint64_t n, uint32_t per_group);

}  // namespace vksd::ops
