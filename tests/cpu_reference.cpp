#include "tests/cpu_reference.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace vksd::cpuref {

namespace {

// ---- primitives (double precision, plain loops) ---------------------------------------------

struct Weights {
  const WeightFn& fn;
  std::string prefix;
  Weights sub(const std::string& s) const { return {fn, prefix + s + "."}; }
  Weights sub(int i) const { return sub(std::to_string(i)); }
  std::vector<float> operator()(const std::string& name, size_t expect) const {
    auto v = fn(prefix + name);
    if (v.size() != expect)
      throw std::runtime_error("cpuref: " + prefix + name + " has " + std::to_string(v.size()) + " values, expected " +
                               std::to_string(expect));
    return v;
  }
};

int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

double silu(double v) { return v / (1.0 + std::exp(-v)); }
double gelu(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }
double quick_gelu(double v) { return v / (1.0 + std::exp(-1.702 * v)); }

// nn.Conv2d with explicit (top, bottom, left, right) zero padding.
Image conv2d(const Weights& w, const Image& x, int co, int k, int stride = 1, int pt = -1, int pb = -1, int pl = -1,
             int pr = -1) {
  if (pt < 0) pt = pb = pl = pr = k / 2;
  const int ci = x.c;
  auto wt = w("weight", (size_t)co * ci * k * k);
  auto bs = w("bias", (size_t)co);
  const int ho = (x.h + pt + pb - k) / stride + 1, wo = (x.w + pl + pr - k) / stride + 1;
  Image y(x.n, co, ho, wo);
  for (int n = 0; n < x.n; ++n)
    for (int o = 0; o < co; ++o) {
      double* out = &y.at(n, o, 0, 0);
      std::fill(out, out + (size_t)ho * wo, (double)bs[o]);
      for (int c = 0; c < ci; ++c) {
        const double* in = &x.at(n, c, 0, 0);
        for (int ky = 0; ky < k; ++ky)
          for (int kx = 0; kx < k; ++kx) {
            const double wv = wt[(((size_t)o * ci + c) * k + ky) * k + kx];
            // output columns whose input column ox*stride - pl + kx lies inside the image
            const int ox0 = std::max(0, -floor_div(kx - pl, stride));
            const int ox1 = std::min(wo, floor_div(x.w - 1 + pl - kx, stride) + 1);
            for (int oy = 0; oy < ho; ++oy) {
              const int iy = oy * stride - pt + ky;
              if (iy < 0 || iy >= x.h) continue;
              const double* row = in + (size_t)iy * x.w;
              double* orow = out + (size_t)oy * wo;
              for (int ox = ox0; ox < ox1; ++ox) orow[ox] += wv * row[ox * stride - pl + kx];
            }
          }
      }
    }
  return y;
}

// nn.Linear over rows: x [rows, in] -> [rows, out].
Vec linear(const Weights& w, const Vec& x, int in, int out, bool bias = true) {
  auto wt = w("weight", (size_t)out * in);
  std::vector<float> bs = bias ? w("bias", (size_t)out) : std::vector<float>((size_t)out, 0.f);
  const size_t rows = x.size() / in;
  Vec y(rows * out);
  Vec wd(wt.begin(), wt.end());
  for (size_t r = 0; r < rows; ++r) {
    const double* xr = &x[r * in];
    for (int o = 0; o < out; ++o) {
      const double* wr = &wd[(size_t)o * in];
      double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      int i = 0;
      for (; i + 4 <= in; i += 4) {
        a0 += xr[i] * wr[i];
        a1 += xr[i + 1] * wr[i + 1];
        a2 += xr[i + 2] * wr[i + 2];
        a3 += xr[i + 3] * wr[i + 3];
      }
      for (; i < in; ++i) a0 += xr[i] * wr[i];
      y[r * out + o] = bs[o] + ((a0 + a1) + (a2 + a3));
    }
  }
  return y;
}

Seq linear(const Weights& w, const Seq& x, int out, bool bias = true) {
  Seq y(x.n, x.len, out);
  y.d = linear(w, x.d, x.dim, out, bias);
  return y;
}

// nn.GroupNorm(32, C, eps) (+ SiLU).
Image group_norm(const Weights& w, const Image& x, double eps, bool with_silu) {
  const int groups = 32, cg = x.c / groups;
  auto g = w("weight", (size_t)x.c), b = w("bias", (size_t)x.c);
  Image y = x;
  const size_t plane = (size_t)x.h * x.w, count = plane * cg;
  for (int n = 0; n < x.n; ++n)
    for (int gi = 0; gi < groups; ++gi) {
      const double* p = &x.at(n, gi * cg, 0, 0);
      double mean = 0, var = 0;
      for (size_t i = 0; i < count; ++i) mean += p[i];
      mean /= (double)count;
      for (size_t i = 0; i < count; ++i) var += (p[i] - mean) * (p[i] - mean);
      var /= (double)count;
      const double inv = 1.0 / std::sqrt(var + eps);
      for (int c = gi * cg; c < (gi + 1) * cg; ++c) {
        double* q = &y.at(n, c, 0, 0);
        for (size_t i = 0; i < plane; ++i) {
          double v = (q[i] - mean) * inv * g[c] + b[c];
          q[i] = with_silu ? silu(v) : v;
        }
      }
    }
  return y;
}

// nn.LayerNorm over the last dimension.
Seq layer_norm(const Weights& w, const Seq& x, double eps) {
  auto g = w("weight", (size_t)x.dim), b = w("bias", (size_t)x.dim);
  Seq y = x;
  for (size_t r = 0; r < (size_t)x.n * x.len; ++r) {
    double* p = &y.d[r * x.dim];
    double mean = 0, var = 0;
    for (int i = 0; i < x.dim; ++i) mean += p[i];
    mean /= x.dim;
    for (int i = 0; i < x.dim; ++i) var += (p[i] - mean) * (p[i] - mean);
    var /= x.dim;
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int i = 0; i < x.dim; ++i) p[i] = (p[i] - mean) * inv * g[i] + b[i];
  }
  return y;
}

// softmax(q kᵀ / sqrt(d)) v per head; q [n, lq, heads*d], k/v [n, lk, heads*d].
Seq attention(const Seq& q, const Seq& k, const Seq& v, int heads, bool causal) {
  const int d = q.dim / heads;
  const double scale = 1.0 / std::sqrt((double)d);
  Seq o(q.n, q.len, q.dim);
  Vec s(k.len);
  for (int n = 0; n < q.n; ++n)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < q.len; ++i) {
        const double* qi = &q.d[((size_t)n * q.len + i) * q.dim + h * d];
        const int lk = causal ? i + 1 : k.len;
        double mx = -INFINITY;
        for (int j = 0; j < lk; ++j) {
          const double* kj = &k.d[((size_t)n * k.len + j) * k.dim + h * d];
          double a = 0;
          for (int e = 0; e < d; ++e) a += qi[e] * kj[e];
          s[j] = a * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < lk; ++j) sum += (s[j] = std::exp(s[j] - mx));
        double* oi = &o.d[((size_t)n * q.len + i) * q.dim + h * d];
        for (int j = 0; j < lk; ++j) {
          const double* vj = &v.d[((size_t)n * v.len + j) * v.dim + h * d];
          const double p = s[j] / sum;
          for (int e = 0; e < d; ++e) oi[e] += p * vj[e];
        }
      }
  return o;
}

Seq to_seq(const Image& x) {
  Seq s(x.n, x.h * x.w, x.c);
  for (int n = 0; n < x.n; ++n)
    for (int c = 0; c < x.c; ++c)
      for (int p = 0; p < x.h * x.w; ++p) s.d[((size_t)n * s.len + p) * x.c + c] = x.d[((size_t)n * x.c + c) * s.len + p];
  return s;
}

Image to_image(const Seq& s, int h, int w) {
  Image x(s.n, s.dim, h, w);
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.dim; ++c)
      for (int p = 0; p < h * w; ++p) x.d[((size_t)n * s.dim + c) * s.len + p] = s.d[((size_t)n * s.len + p) * s.dim + c];
  return x;
}

void add_into(Vec& a, const Vec& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
}

Image upsample2x(const Image& x) {
  Image y(x.n, x.c, 2 * x.h, 2 * x.w);
  for (int n = 0; n < x.n; ++n)
    for (int c = 0; c < x.c; ++c)
      for (int yy = 0; yy < y.h; ++yy)
        for (int xx = 0; xx < y.w; ++xx) y.at(n, c, yy, xx) = x.at(n, c, yy / 2, xx / 2);
  return y;
}

Image concat(const Image& a, const Image& b) {
  Image y(a.n, a.c + b.c, a.h, a.w);
  const size_t pa = (size_t)a.c * a.h * a.w, pb = (size_t)b.c * b.h * b.w;
  for (int n = 0; n < a.n; ++n) {
    std::copy(a.d.begin() + n * pa, a.d.begin() + (n + 1) * pa, y.d.begin() + n * (pa + pb));
    std::copy(b.d.begin() + n * pb, b.d.begin() + (n + 1) * pb, y.d.begin() + n * (pa + pb) + pa);
  }
  return y;
}

// ---- UNet (LDM openaimodel.py) ---------------------------------------------------------------

Image res_block(const Weights& w, const Image& x, const Vec& emb, int emb_dim, int out_ch, double eps) {
  Image h = conv2d(w.sub("in_layers.2"), group_norm(w.sub("in_layers.0"), x, eps, true), out_ch, 3);
  Vec e(emb.size());
  for (size_t i = 0; i < e.size(); ++i) e[i] = silu(emb[i]);
  Vec eo = linear(w.sub("emb_layers.1"), e, emb_dim, out_ch);
  const size_t plane = (size_t)h.h * h.w;
  for (int n = 0; n < h.n; ++n)
    for (int c = 0; c < out_ch; ++c)
      for (size_t p = 0; p < plane; ++p) h.d[((size_t)n * out_ch + c) * plane + p] += eo[(size_t)n * out_ch + c];
  h = conv2d(w.sub("out_layers.3"), group_norm(w.sub("out_layers.0"), h, eps, true), out_ch, 3);
  if (x.c != out_ch) add_into(h.d, conv2d(w.sub("skip_connection"), x, out_ch, 1).d);
  else add_into(h.d, x.d);
  return h;
}

Seq cross_attention(const Weights& w, const Seq& x, const Seq* ctx, int heads) {
  const Seq& c = ctx ? *ctx : x;
  Seq q = linear(w.sub("to_q"), x, x.dim, false);
  Seq k = linear(w.sub("to_k"), c, x.dim, false);
  Seq v = linear(w.sub("to_v"), c, x.dim, false);
  return linear(w.sub("to_out.0"), attention(q, k, v, heads, false), x.dim);
}

Seq transformer_block(const Weights& w, Seq x, const Seq& ctx, int heads, double ln_eps) {
  add_into(x.d, cross_attention(w.sub("attn1"), layer_norm(w.sub("norm1"), x, ln_eps), nullptr, heads).d);
  add_into(x.d, cross_attention(w.sub("attn2"), layer_norm(w.sub("norm2"), x, ln_eps), &ctx, heads).d);
  Seq h = linear(w.sub("ff.net.0.proj"), layer_norm(w.sub("norm3"), x, ln_eps), 8 * x.dim);
  const int inner = 4 * x.dim;
  Seq g(x.n, x.len, inner);
  for (size_t r = 0; r < (size_t)x.n * x.len; ++r)
    for (int i = 0; i < inner; ++i) g.d[r * inner + i] = h.d[r * 2 * inner + i] * gelu(h.d[r * 2 * inner + inner + i]);
  add_into(x.d, linear(w.sub("ff.net.2"), g, x.dim).d);
  return x;
}

Image spatial_transformer(const Weights& w, const Image& x, const Seq& ctx, int heads, int depth, const UNetConfig& cfg) {
  Image h = group_norm(w.sub("norm"), x, 1e-6, false);  // LDM Normalize(): eps 1e-6
  h = conv2d(w.sub("proj_in"), h, x.c, 1);
  Seq s = to_seq(h);
  for (int d = 0; d < depth; ++d) s = transformer_block(w.sub("transformer_blocks").sub(d), s, ctx, heads, cfg.ln_eps);
  h = conv2d(w.sub("proj_out"), to_image(s, x.h, x.w), x.c, 1);
  add_into(h.d, x.d);
  return h;
}

// ---- VAE (LDM model.py) ----------------------------------------------------------------------

Image resnet_block(const Weights& w, const Image& x, int out_ch, double eps) {
  Image h = conv2d(w.sub("conv1"), group_norm(w.sub("norm1"), x, eps, true), out_ch, 3);
  h = conv2d(w.sub("conv2"), group_norm(w.sub("norm2"), h, eps, true), out_ch, 3);
  if (x.c != out_ch) add_into(h.d, conv2d(w.sub("nin_shortcut"), x, out_ch, 1).d);
  else add_into(h.d, x.d);
  return h;
}

Image attn_block(const Weights& w, const Image& x, double eps) {
  Image h = group_norm(w.sub("norm"), x, eps, false);
  Seq q = to_seq(conv2d(w.sub("q"), h, x.c, 1)), k = to_seq(conv2d(w.sub("k"), h, x.c, 1)),
      v = to_seq(conv2d(w.sub("v"), h, x.c, 1));
  Image o = conv2d(w.sub("proj_out"), to_image(attention(q, k, v, 1, false), x.h, x.w), x.c, 1);
  add_into(o.d, x.d);
  return o;
}

Image vae_mid(const Weights& w, Image h, double eps) {
  h = resnet_block(w.sub("block_1"), h, h.c, eps);
  h = attn_block(w.sub("attn_1"), h, eps);
  return resnet_block(w.sub("block_2"), h, h.c, eps);
}

}  // namespace

Seq clip_text(const WeightFn& fn, const ClipConfig& cfg, const std::vector<int32_t>& ids, int batch,
              std::vector<Seq>* layers) {
  const Weights w{fn, "cond_stage_model.transformer.text_model."};
  const int L = cfg.max_length, D = cfg.width;
  auto tok = w("embeddings.token_embedding.weight", (size_t)cfg.vocab_size * D);
  auto pos = w("embeddings.position_embedding.weight", (size_t)L * D);
  Seq x(batch, L, D);
  for (int n = 0; n < batch; ++n)
    for (int i = 0; i < L; ++i)
      for (int c = 0; c < D; ++c)
        x.d[((size_t)n * L + i) * D + c] = (double)tok[(size_t)ids[(size_t)n * L + i] * D + c] + pos[(size_t)i * D + c];
  for (int l = 0; l < cfg.used_layers(); ++l) {  // SD 2.x: the last stored layer is not used
    const Weights lw = w.sub("encoder.layers").sub(l);
    Seq h = layer_norm(lw.sub("layer_norm1"), x, cfg.ln_eps);
    Seq q = linear(lw.sub("self_attn.q_proj"), h, D), k = linear(lw.sub("self_attn.k_proj"), h, D),
        v = linear(lw.sub("self_attn.v_proj"), h, D);
    add_into(x.d, linear(lw.sub("self_attn.out_proj"), attention(q, k, v, cfg.heads, true), D).d);
    h = linear(lw.sub("mlp.fc1"), layer_norm(lw.sub("layer_norm2"), x, cfg.ln_eps), cfg.mlp_dim);
    for (double& e : h.d) e = cfg.quick_gelu ? quick_gelu(e) : gelu(e);
    add_into(x.d, linear(lw.sub("mlp.fc2"), h, D).d);
    if (layers) layers->push_back(x);
  }
  return layer_norm(w.sub("final_layer_norm"), x, cfg.ln_eps);
}

Image unet(const WeightFn& fn, const UNetConfig& cfg, const Image& x, const std::vector<double>& t, const Seq& ctx,
           std::map<std::string, Image>* blocks, const Vec& y) {
  const Weights w{fn, "model.diffusion_model."};
  const int mc = cfg.model_channels, ted = cfg.time_embed_dim(), levels = (int)cfg.channel_mult.size();
  // Sinusoidal embedding [cos, sin], then time_embed MLP.
  const int half = mc / 2;
  Vec temb((size_t)x.n * mc);
  for (int n = 0; n < x.n; ++n)
    for (int i = 0; i < half; ++i) {
      const double f = std::exp(-std::log(10000.0) * i / half);
      temb[(size_t)n * mc + i] = std::cos(t[n] * f);
      temb[(size_t)n * mc + half + i] = std::sin(t[n] * f);
    }
  Vec emb = linear(w.sub("time_embed.0"), temb, mc, ted);
  for (double& e : emb) e = silu(e);
  emb = linear(w.sub("time_embed.2"), emb, ted, ted);
  if (blocks) {
    Image e(x.n, ted, 1, 1);
    e.d = emb;
    (*blocks)["time_embed"] = e;
  }
  // SDXL's vector input: emb += label_emb(y), label_emb = Linear -> SiLU -> Linear.
  if (cfg.adm_in_channels > 0) {
    if (y.size() != (size_t)x.n * cfg.adm_in_channels) throw std::runtime_error("cpuref::unet: y must be [batch, adm_in_channels]");
    Vec l = linear(w.sub("label_emb.0.0"), y, cfg.adm_in_channels, ted);
    for (double& e : l) e = silu(e);
    l = linear(w.sub("label_emb.0.2"), l, ted, ted);
    if (blocks) {
      Image e(x.n, ted, 1, 1);
      e.d = l;
      (*blocks)["label_emb"] = e;
    }
    add_into(emb, l);
  }
  auto record = [&](const std::string& name, const Image& h) {
    if (blocks) (*blocks)[name] = h;
  };

  std::vector<Image> skips;
  Image h = conv2d(w.sub("input_blocks.0.0"), x, mc, 3);
  record("input_blocks.0", h);
  skips.push_back(h);
  int idx = 0;
  for (int lv = 0; lv < levels; ++lv) {
    const int ch = mc * cfg.channel_mult[lv];
    for (int r = 0; r < cfg.num_res_blocks; ++r) {
      const Weights b = w.sub("input_blocks").sub(++idx);
      h = res_block(b.sub(0), h, emb, ted, ch, cfg.gn_eps);
      if (cfg.depth_at(lv) > 0) h = spatial_transformer(b.sub(1), h, ctx, cfg.heads_for(ch), cfg.depth_at(lv), cfg);
      record("input_blocks." + std::to_string(idx), h);
      skips.push_back(h);
    }
    if (lv != levels - 1) {
      h = conv2d(w.sub("input_blocks").sub(++idx).sub("0.op"), h, ch, 3, 2);
      record("input_blocks." + std::to_string(idx), h);
      skips.push_back(h);
    }
  }
  {
    const int ch = h.c;
    h = res_block(w.sub("middle_block.0"), h, emb, ted, ch, cfg.gn_eps);
    h = spatial_transformer(w.sub("middle_block.1"), h, ctx, cfg.heads_for(ch), cfg.middle_depth(), cfg);
    h = res_block(w.sub("middle_block.2"), h, emb, ted, ch, cfg.gn_eps);
    record("middle_block", h);
  }
  idx = 0;
  for (int lv = levels - 1; lv >= 0; --lv) {
    const int ch = mc * cfg.channel_mult[lv];
    for (int i = 0; i <= cfg.num_res_blocks; ++i, ++idx) {
      const Weights b = w.sub("output_blocks").sub(idx);
      h = concat(h, skips.back());
      skips.pop_back();
      h = res_block(b.sub(0), h, emb, ted, ch, cfg.gn_eps);
      int k = 1;
      if (cfg.depth_at(lv) > 0) h = spatial_transformer(b.sub(k++), h, ctx, cfg.heads_for(ch), cfg.depth_at(lv), cfg);
      if (lv > 0 && i == cfg.num_res_blocks) h = conv2d(b.sub(k).sub("conv"), upsample2x(h), ch, 3);
      record("output_blocks." + std::to_string(idx), h);
    }
  }
  h = group_norm(w.sub("out.0"), h, cfg.gn_eps, true);
  return conv2d(w.sub("out.2"), h, cfg.out_channels, 3);
}

Image vae_decode(const WeightFn& fn, const VaeConfig& cfg, const Image& z) {
  const Weights w{fn, "first_stage_model."};
  const Weights d = w.sub("decoder");
  const int levels = (int)cfg.ch_mult.size();
  Image h = conv2d(w.sub("post_quant_conv"), z, cfg.z_channels, 1);
  h = conv2d(d.sub("conv_in"), h, cfg.ch * cfg.ch_mult.back(), 3);
  h = vae_mid(d.sub("mid"), h, cfg.gn_eps);
  for (int i = levels - 1; i >= 0; --i) {
    for (int j = 0; j <= cfg.num_res_blocks; ++j)
      h = resnet_block(d.sub("up").sub(i).sub("block").sub(j), h, cfg.ch * cfg.ch_mult[i], cfg.gn_eps);
    if (i != 0) h = conv2d(d.sub("up").sub(i).sub("upsample.conv"), upsample2x(h), h.c, 3);
  }
  h = group_norm(d.sub("norm_out"), h, cfg.gn_eps, true);
  return conv2d(d.sub("conv_out"), h, cfg.out_channels, 3);
}

Image vae_encode_moments(const WeightFn& fn, const VaeConfig& cfg, const Image& image) {
  const Weights w{fn, "first_stage_model."};
  const Weights e = w.sub("encoder");
  const int levels = (int)cfg.ch_mult.size();
  Image h = conv2d(e.sub("conv_in"), image, cfg.ch, 3);
  for (int i = 0; i < levels; ++i) {
    for (int j = 0; j < cfg.num_res_blocks; ++j)
      h = resnet_block(e.sub("down").sub(i).sub("block").sub(j), h, cfg.ch * cfg.ch_mult[i], cfg.gn_eps);
    // pad (left 0, right 1, top 0, bottom 1), conv3x3 stride 2 without padding
    if (i != levels - 1) h = conv2d(e.sub("down").sub(i).sub("downsample.conv"), h, h.c, 3, 2, 0, 1, 0, 1);
  }
  h = vae_mid(e.sub("mid"), h, cfg.gn_eps);
  h = group_norm(e.sub("norm_out"), h, cfg.gn_eps, true);
  h = conv2d(e.sub("conv_out"), h, 2 * cfg.z_channels, 3);
  return conv2d(w.sub("quant_conv"), h, 2 * cfg.embed_dim, 1);
}

}  // namespace vksd::cpuref
