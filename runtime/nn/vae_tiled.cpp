#include "runtime/nn/vae_tiled.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "runtime/error.h"

namespace vksd::nn {

std::vector<int> tile_starts(int size, int tile, int overlap) {
  if (size < 1) fail("VAE tiling: image axis of " + std::to_string(size) + " pixels");
  if (tile < 1 || overlap < 0 || overlap >= tile)
    fail("VAE tiling: tile " + std::to_string(tile) + " and overlap " + std::to_string(overlap) +
         " (latent pixels) must satisfy tile >= 1 and 0 <= overlap < tile");
  const int t = std::min(tile, size);
  if (t == size) return {0};
  // The fewest tiles whose neighbours overlap by >= `overlap` when stepped by tile - overlap,
  // then spread evenly: the last tile ends exactly at the edge and every overlap is >= `overlap`.
  const int step = tile - overlap, span = size - t;
  const int gaps = (span + step - 1) / step;
  std::vector<int> starts((size_t)gaps + 1);
  for (int i = 0; i <= gaps; ++i) starts[(size_t)i] = (int)(((int64_t)i * span + gaps / 2) / gaps);
  return starts;
}

std::vector<std::vector<float>> tile_weights(const std::vector<int>& starts, int tile, int size) {
  const int n = (int)starts.size();
  // Ramp of tile i at absolute pixel x: rises over the overlap with the previous tile and falls
  // over the overlap with the next one, measured at pixel centres so that it never reaches 0
  // inside the tile and two overlapping ramps sum to exactly 1.
  auto ramp = [&](int i, int x) {
    double r = 1;
    const int s = starts[(size_t)i], e = s + tile;
    if (i > 0) {
      const int prev_end = starts[(size_t)i - 1] + tile;
      if (x < prev_end) r = std::min(r, (x - s + 0.5) / (prev_end - s));
    }
    if (i + 1 < n) {
      const int next = starts[(size_t)i + 1];
      if (x >= next) r = std::min(r, (e - x - 0.5) / (e - next));
    }
    return r;
  };
  // Normalised, so the weights sum to 1 even where three tiles meet (tiny steps).
  std::vector<double> sum((size_t)size, 0.0);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < tile; ++k) sum[(size_t)(starts[(size_t)i] + k)] += ramp(i, starts[(size_t)i] + k);
  std::vector<std::vector<float>> w((size_t)n, std::vector<float>((size_t)tile));
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < tile; ++k) {
      const int x = starts[(size_t)i] + k;
      w[(size_t)i][(size_t)k] = (float)(ramp(i, x) / sum[(size_t)x]);
    }
  return w;
}

namespace {

std::vector<int> scaled(std::vector<int> v, int f) {
  for (int& x : v) x *= f;
  return v;
}

// Copies the tile [y0, y0+th) x [x0, x0+tw) of every plane of a [planes, H, W] array.
void crop(const std::vector<float>& src, int planes, int H, int W, int y0, int x0, int th, int tw,
          std::vector<float>& dst) {
  dst.resize((size_t)planes * th * tw);
  for (int p = 0; p < planes; ++p)
    for (int y = 0; y < th; ++y) {
      const float* row = src.data() + ((size_t)p * H + y0 + y) * W + x0;
      std::copy(row, row + tw, dst.data() + ((size_t)p * th + y) * tw);
    }
}

// dst[p, y0+y, x0+x] += wy[y] * wx[x] * tile[p, y, x].
void blend_add(const std::vector<float>& tile, int planes, int th, int tw, const std::vector<float>& wy,
               const std::vector<float>& wx, int H, int W, int y0, int x0, std::vector<float>& dst) {
  for (int p = 0; p < planes; ++p)
    for (int y = 0; y < th; ++y) {
      const float* s = tile.data() + ((size_t)p * th + y) * tw;
      float* d = dst.data() + ((size_t)p * H + y0 + y) * W + x0;
      const float a = wy[(size_t)y];
      for (int x = 0; x < tw; ++x) d[x] += a * wx[(size_t)x] * s[x];
    }
}

// GroupNorm statistics of all tiles merged into those of the image: per GroupNorm and group,
// the weighted mean of the tiles' means and of their variances plus squared mean deviations
// (Chan's parallel formula), a tile weighing as much as the share of the image it blends into.
class StatsMerger {
 public:
  explicit StatsMerger(float eps) : eps_(eps) {}
  void add(VaePartNet& net, double weight) {
    if (acc_.empty()) acc_.resize((size_t)net.norm_count());
    for (int k = 0; k < net.norm_count(); ++k) {
      const std::vector<float> s = net.norm_stats(k);
      auto& a = acc_[(size_t)k];
      if (a.empty()) a.assign(s.size() / 2 * 3, 0.0);
      for (size_t g = 0; g < s.size() / 2; ++g) {
        const double mean = s[2 * g], rstd = s[2 * g + 1];
        const double var = std::max(0.0, 1.0 / (rstd * rstd) - eps_);
        a[3 * g] += weight;
        a[3 * g + 1] += weight * mean;
        a[3 * g + 2] += weight * (var + mean * mean);
      }
    }
  }
  // Hands the merged statistics to `net` (as given statistics) and starts over.
  void give_to(VaePartNet& net) {
    for (int k = 0; k < (int)acc_.size(); ++k) {
      const auto& a = acc_[(size_t)k];
      std::vector<float> s(a.size() / 3 * 2);
      for (size_t g = 0; g < a.size() / 3; ++g) {
        const double mean = a[3 * g + 1] / a[3 * g];
        const double var = std::max(0.0, a[3 * g + 2] / a[3 * g] - mean * mean);
        s[2 * g] = (float)mean;
        s[2 * g + 1] = (float)(1.0 / std::sqrt(var + eps_));
      }
      net.set_norm_stats(k, s);
    }
    acc_.clear();
  }

 private:
  float eps_;
  std::vector<std::vector<double>> acc_;  // per GroupNorm: (weight, sum w mean, sum w E[x^2]) per group
};

// The tile geometry of one tiled run: tiles of th x tw latent pixels at ys x xs; the part's
// input is in_scale and its output out_scale times latent resolution; blend weights at output
// resolution.
struct TileGrid {
  int h, w, th, tw, in_scale, out_scale;
  const std::vector<int>& ys;
  const std::vector<int>& xs;
  const std::vector<std::vector<float>>& wy;
  const std::vector<std::vector<float>>& wx;
};

// Runs the tile graph over every tile of x ([in_planes, h * in_scale, w * in_scale]):
// `stat_passes` passes that gather GroupNorm statistics, then the pass whose tile outputs are
// blended into the result [out_planes, h * out_scale, w * out_scale].
std::vector<float> run_tiled(VaePartNet& net, const std::vector<float>& x, int in_planes, const TileGrid& t,
                             int stat_passes, float eps) {
  const int in_h = t.h * t.in_scale, in_w = t.w * t.in_scale;
  const int oh = t.h * t.out_scale, ow = t.w * t.out_scale, oth = t.th * t.out_scale, otw = t.tw * t.out_scale;
  const Shape& os = net.output_shape();
  const int out_planes = (int)(os[0] * os[1]);
  if (os[2] != oth || os[3] != otw) fail("VAE tiling: the tile graph's output is not the expected size");
  auto sum = [](const std::vector<float>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
  std::vector<float> out, tile;
  StatsMerger merger(eps);
  for (int pass = 0; pass <= stat_passes; ++pass) {
    const bool last = pass == stat_passes;
    if (stat_passes > 0) net.use_given_norm_stats(pass > 0);
    if (last) out.assign((size_t)out_planes * oh * ow, 0.f);
    for (size_t iy = 0; iy < t.ys.size(); ++iy)
      for (size_t ix = 0; ix < t.xs.size(); ++ix) {
        crop(x, in_planes, in_h, in_w, t.ys[iy] * t.in_scale, t.xs[ix] * t.in_scale, t.th * t.in_scale,
             t.tw * t.in_scale, tile);
        const std::vector<float> y = net.run(tile);
        if (last)
          blend_add(y, out_planes, oth, otw, t.wy[iy], t.wx[ix], oh, ow, t.ys[iy] * t.out_scale,
                    t.xs[ix] * t.out_scale, out);
        else
          merger.add(net, sum(t.wy[iy]) * sum(t.wx[ix]));
      }
    if (!last) merger.give_to(net);
  }
  return out;
}

}  // namespace

// ---- decoder ----------------------------------------------------------------------------------

TiledVaeDecoder::TiledVaeDecoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch,
                                 int latent_h, int latent_w, VaeTiles tiles, NetOptions opts)
    : cfg_(cfg), tiles_(tiles), batch_(batch), h_(latent_h), w_(latent_w) {
  if (batch < 1 || latent_h < 1 || latent_w < 1)
    fail("TiledVaeDecoder: batch " + std::to_string(batch) + " and latent size " + std::to_string(latent_h) + "x" +
         std::to_string(latent_w) + " must be positive");
  if (tiles.stat_passes < 0) fail("VAE tiling: stat_passes must be >= 0");
  ys_ = tile_starts(latent_h, tiles.tile, tiles.overlap);
  xs_ = tile_starts(latent_w, tiles.tile, tiles.overlap);
  th_ = std::min(tiles.tile, latent_h);
  tw_ = std::min(tiles.tile, latent_w);
  const int f = cfg.downsample_factor();
  wy_ = tile_weights(scaled(ys_, f), th_ * f, h_ * f);
  wx_ = tile_weights(scaled(xs_, f), tw_ * f, w_ * f);
  head_ = std::make_unique<VaePartNet>(ctx, weights, cfg, VaePart::DecoderHead, batch, h_, w_, VaeNorms::Own, opts);
  const bool merged = tiled() && tiles.stat_passes > 0;
  tail_ = std::make_unique<VaePartNet>(ctx, weights, cfg, VaePart::DecoderTail, batch, th_, tw_,
                                       merged ? VaeNorms::Selectable : VaeNorms::Own, opts);
}

TiledVaeDecoder::~TiledVaeDecoder() = default;

VkDeviceSize TiledVaeDecoder::peak_bytes() const { return head_->peak_bytes() + tail_->peak_bytes(); }

std::vector<float> TiledVaeDecoder::decode(const std::vector<float>& z) {
  const int zc = cfg_.embed_dim;
  if (z.size() != (size_t)batch_ * zc * h_ * w_)
    fail("TiledVaeDecoder::decode: got " + std::to_string(z.size()) + " floats, expected [" + std::to_string(batch_) +
         ", " + std::to_string(zc) + ", " + std::to_string(h_) + ", " + std::to_string(w_) + "]");
  const std::vector<float> mid = head_->run(z);
  if (!tiled()) return tail_->run(mid);
  const TileGrid grid{h_, w_, th_, tw_, 1, cfg_.downsample_factor(), ys_, xs_, wy_, wx_};
  const int mid_planes = (int)(head_->output_shape()[0] * head_->output_shape()[1]);
  return run_tiled(*tail_, mid, mid_planes, grid, tiles_.stat_passes, cfg_.gn_eps);
}

// ---- encoder ----------------------------------------------------------------------------------

TiledVaeEncoder::TiledVaeEncoder(Context& ctx, const WeightStore& weights, const VaeConfig& cfg, int batch,
                                 int image_h, int image_w, VaeTiles tiles, NetOptions opts)
    : cfg_(cfg), tiles_(tiles), batch_(batch) {
  const int f = cfg.downsample_factor();
  if (batch < 1 || image_h < f || image_w < f || image_h % f || image_w % f)
    fail("TiledVaeEncoder: image size " + std::to_string(image_h) + "x" + std::to_string(image_w) +
         " must be a positive multiple of " + std::to_string(f));
  if (tiles.stat_passes < 0) fail("VAE tiling: stat_passes must be >= 0");
  h_ = image_h / f, w_ = image_w / f;
  ys_ = tile_starts(h_, tiles.tile, tiles.overlap);
  xs_ = tile_starts(w_, tiles.tile, tiles.overlap);
  th_ = std::min(tiles.tile, h_);
  tw_ = std::min(tiles.tile, w_);
  wy_ = tile_weights(ys_, th_, h_);
  wx_ = tile_weights(xs_, tw_, w_);
  const bool merged = tiled() && tiles.stat_passes > 0;
  head_ = std::make_unique<VaePartNet>(ctx, weights, cfg, VaePart::EncoderHead, batch, th_ * f, tw_ * f,
                                       merged ? VaeNorms::Selectable : VaeNorms::Own, opts);
  tail_ = std::make_unique<VaePartNet>(ctx, weights, cfg, VaePart::EncoderTail, batch, h_, w_, VaeNorms::Own, opts);
  if (tail_->output_shape()[1] != 2 * cfg.embed_dim)
    fail("TiledVaeEncoder: quant_conv gives " + std::to_string(tail_->output_shape()[1]) +
         " channels, expected 2 x embed_dim " + std::to_string(cfg.embed_dim));
}

TiledVaeEncoder::~TiledVaeEncoder() = default;

VkDeviceSize TiledVaeEncoder::peak_bytes() const { return head_->peak_bytes() + tail_->peak_bytes(); }

VaeEncoder::Posterior TiledVaeEncoder::encode(const std::vector<float>& image) {
  const int f = cfg_.downsample_factor(), ic = cfg_.in_channels, e = cfg_.embed_dim;
  const int H = h_ * f, W = w_ * f;
  if (image.size() != (size_t)batch_ * ic * H * W)
    fail("TiledVaeEncoder::encode: got " + std::to_string(image.size()) + " floats, expected [" +
         std::to_string(batch_) + ", " + std::to_string(ic) + ", " + std::to_string(H) + ", " + std::to_string(W) + "]");
  std::vector<float> down;
  if (!tiled()) {
    down = head_->run(image);
  } else {
    const TileGrid grid{h_, w_, th_, tw_, f, 1, ys_, xs_, wy_, wx_};
    down = run_tiled(*head_, image, batch_ * ic, grid, tiles_.stat_passes, cfg_.gn_eps);
  }
  const std::vector<float> m = tail_->run(down);
  // moments [B, 2E, h, w]: the first E channels are the mean, the last E the log-variance
  // (clamped to [-30, 20] as VaeEncoder does).
  const size_t half = (size_t)e * h_ * w_;
  VaeEncoder::Posterior p;
  for (int b = 0; b < batch_; ++b) {
    const float* base = m.data() + (size_t)b * 2 * half;
    p.mean.insert(p.mean.end(), base, base + half);
    for (size_t i = 0; i < half; ++i) p.logvar.push_back(std::clamp(base[half + i], -30.f, 20.f));
  }
  return p;
}

}  // namespace vksd::nn
