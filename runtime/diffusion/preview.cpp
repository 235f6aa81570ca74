#include "runtime/diffusion/preview.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/gpu/kernel.h"
#include "runtime/gpu/memory.h"
#include "runtime/diffusion/preview_slots.h"

namespace vksd {

LatentRgbMap LatentRgbMap::sd1() {
  // Rows: latent channels; columns: R, G, B (the community's least-squares fit to SD 1.x's VAE).
  LatentRgbMap m;
  m.channels = 4;
  m.weights = {0.298f, 0.207f, 0.208f, 0.187f, 0.286f, 0.173f, -0.158f, 0.189f, 0.264f, -0.184f, -0.271f, -0.473f};
  return m;
}

LatentRgbMap LatentRgbMap::sdxl() {
  // AUTOMATIC1111's "Approx cheap" coefficients for SDXL (modules/sd_samplers_common.py,
  // samples_to_images_tensor), the published fit for SDXL's VAE; rows latent channels, columns
  // R, G, B, no bias. The SD 1.x table above is the same file's other branch.
  LatentRgbMap m;
  m.channels = 4;
  m.weights = {0.3448f, 0.4168f, 0.4395f, -0.1953f, -0.0290f, 0.0250f, 0.1074f, 0.0886f, -0.0163f, -0.3730f, -0.2499f, -0.2088f};
  return m;
}

void LatentRgbMap::check(const char* what) const {
  if (channels < 1 || channels > LatentPreview::kMaxChannels)
    fail(std::string(what) + ": " + std::to_string(channels) + " latent channels (1 to " +
         std::to_string(LatentPreview::kMaxChannels) + " supported)");
  if (weights.size() != (size_t)channels * 3)
    fail(std::string(what) + ": " + std::to_string(weights.size()) + " weights for " + std::to_string(channels) +
         " channels (need channels x 3)");
  for (float w : weights)
    if (!std::isfinite(w)) fail(std::string(what) + ": a weight is not finite");
  for (float b : bias)
    if (!std::isfinite(b)) fail(std::string(what) + ": a bias is not finite");
}

namespace {

// shaders/latent_rgb.comp's push constants.
struct Push {
  uint32_t channels, height, width;
  float scale;
  float m[12];  // m[c * 4 + l]
  float bias[3];
};
static_assert(sizeof(Push) == 76 && sizeof(Push) <= kPushConstantBytes);

}  // namespace

LatentPreview::LatentPreview(Context& ctx, int channels, int height, int width, int slots)
    : ctx_(ctx), channels_(channels), height_(height), width_(width), slots_(slots) {
  if (channels < 1 || channels > kMaxChannels)
    fail("LatentPreview: " + std::to_string(channels) + " latent channels (1 to " + std::to_string(kMaxChannels) +
         " supported)");
  if (height < 1 || width < 1 || slots < 1)
    fail("LatentPreview: bad geometry " + std::to_string(height) + "x" + std::to_string(width) + ", " +
         std::to_string(slots) + " slots");
  slots_impl_ = std::make_unique<PreviewSlots>(ctx, "LatentPreview", "latent_rgb", slots,
                                               (uint64_t)channels * height * width, (uint64_t)height * width);
}

LatentPreview::~LatentPreview() = default;

VkBuffer LatentPreview::output_buffer() const { return slots_impl_->output_buffer(); }

VkDeviceSize LatentPreview::output_offset(int slot) const { return slots_impl_->output_offset(slot); }

void LatentPreview::check_args(int slot, const LatentRgbMap& map) const {
  slots_impl_->check_slot(slot);
  map.check("LatentPreview");
  if (map.channels != channels_)
    fail("LatentPreview: the map is for " + std::to_string(map.channels) + " latent channels, the preview for " +
         std::to_string(channels_));
}

void LatentPreview::record(VkCommandBuffer cb, int slot, const float* latent, const LatentRgbMap& map, float scale) {
  check_args(slot, map);
  const size_t plane = (size_t)height_ * width_;
  std::memcpy(slots_impl_->input(slot), latent, plane * channels_ * sizeof(float));

  Push pc{};
  pc.channels = (uint32_t)channels_;
  pc.height = (uint32_t)height_;
  pc.width = (uint32_t)width_;
  pc.scale = scale;
  for (int c = 0; c < 3; ++c) {
    for (int l = 0; l < channels_; ++l) pc.m[c * 4 + l] = map.weights[(size_t)l * 3 + c];
    pc.bias[c] = map.bias[c];
  }

  slots_impl_->record(cb, slot, &pc, sizeof pc);
}

Image LatentPreview::render(const std::vector<float>& latent, const LatentRgbMap& map, float scale) {
  const size_t plane = (size_t)height_ * width_;
  if (latent.size() != plane * channels_)
    fail("LatentPreview::render: latent has " + std::to_string(latent.size()) + " values, expected " +
         std::to_string(channels_) + "x" + std::to_string(height_) + "x" + std::to_string(width_));
  check_args(0, map);  // before a command buffer is begun
  VkCommandBuffer cb = ctx_.begin_commands();
  record(cb, 0, latent.data(), map, scale);
  ctx_.submit_and_wait(cb);
  std::vector<uint8_t> rgba(plane * 4);
  download_bytes(ctx_, output_buffer(), output_offset(0), rgba.data(), rgba.size());
  Image img(width_, height_, 3);
  for (size_t i = 0; i < plane; ++i) std::memcpy(&img.pixels[i * 3], &rgba[i * 4], 3);
  return img;
}

// ---- heatmaps ---------------------------------------------------------------------------------

namespace {

constexpr int kMaps = 3, kLevels = 256;

struct Key {
  double u;
  uint8_t r, g, b;
};

// 256 levels, piecewise linear between key colours, rounded half up.
void fill_table(const std::vector<Key>& keys, uint8_t* out) {
  for (int i = 0; i < kLevels; ++i) {
    const double u = (double)i / (kLevels - 1);
    size_t k = 0;
    while (k + 2 < keys.size() && u > keys[k + 1].u) ++k;
    const Key &a = keys[k], &b = keys[k + 1];
    const double f = std::clamp((u - a.u) / (b.u - a.u), 0.0, 1.0);
    const double c[3] = {a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)};
    for (int j = 0; j < 3; ++j) out[i * 3 + j] = (uint8_t)std::floor(c[j] + 0.5);
  }
}

// [map][level][rgb], built once.
const std::array<uint8_t, kMaps * kLevels * 3>& color_tables() {
  static const auto tables = [] {
    std::array<uint8_t, kMaps * kLevels * 3> t{};
    // ColorBrewer RdBu (11 classes), reversed so that low is blue, with pure white in the middle.
    fill_table({{0.0, 5, 48, 97},
                {0.1, 33, 102, 172},
                {0.2, 67, 147, 195},
                {0.3, 146, 197, 222},
                {0.4, 209, 229, 240},
                {0.5, 255, 255, 255},
                {0.6, 253, 219, 199},
                {0.7, 244, 165, 130},
                {0.8, 214, 96, 77},
                {0.9, 178, 24, 43},
                {1.0, 103, 0, 31}},
               t.data() + (size_t)ColorMap::Diverging * kLevels * 3);
    // matplotlib's viridis at 11 evenly spaced points.
    fill_table({{0.0, 68, 1, 84},
                {0.1, 72, 37, 118},
                {0.2, 65, 68, 135},
                {0.3, 53, 96, 141},
                {0.4, 42, 120, 142},
                {0.5, 33, 144, 140},
                {0.6, 34, 168, 132},
                {0.7, 67, 191, 113},
                {0.8, 122, 209, 81},
                {0.9, 187, 223, 39},
                {1.0, 253, 231, 37}},
               t.data() + (size_t)ColorMap::Viridis * kLevels * 3);
    fill_table({{0.0, 0, 0, 0}, {1.0, 255, 255, 255}}, t.data() + (size_t)ColorMap::Gray * kLevels * 3);
    return t;
  }();
  return tables;
}

int map_index(ColorMap map) {
  const int m = (int)map;
  if (m < 0 || m >= kMaps) fail("heatmap: unknown colour map " + std::to_string(m));
  return m;
}

float heatmap_inv(float lo, float hi) {
  if (!(hi > lo)) return 0.f;
  const float inv = 1.f / (hi - lo);
  return std::isfinite(inv) ? inv : 0.f;
}

// The same operations, in the same order, as shaders/heatmap.comp. `volatile` keeps each
// intermediate a rounded float (no contraction into a fused multiply-add).
float heatmap_u(float v, float lo, float inv) {
  volatile float d = v - lo;
  volatile float u = d * inv;
  float x = u >= 0.f ? (float)u : 0.f;  // NaN -> 0
  return std::min(x, 1.f);
}

uint8_t level_of(float u) {
  volatile float q = u * 255.f + 0.5f;
  return (uint8_t)(uint32_t)q;
}

// shaders/heatmap.comp's push constants.
struct HeatPush {
  uint32_t count, map;
  float lo, inv, overlay;
};
static_assert(sizeof(HeatPush) == 20 && sizeof(HeatPush) <= kPushConstantBytes);

}  // namespace

const char* color_map_name(ColorMap map) {
  switch (map) {
    case ColorMap::Diverging: return "diverging";
    case ColorMap::Viridis: return "viridis";
    case ColorMap::Gray: return "gray";
  }
  return "?";
}

void heatmap_color(float u, ColorMap map, uint8_t rgb[3]) {
  float x = u >= 0.f ? u : 0.f;  // NaN -> 0
  x = std::min(x, 1.f);
  const uint8_t* c = color_tables().data() + ((size_t)map_index(map) * kLevels + level_of(x)) * 3;
  std::memcpy(rgb, c, 3);
}

void heatmap_texel(float v, float lo, float hi, ColorMap map, float overlay_alpha, uint8_t rgba[4]) {
  const float u = heatmap_u(v, lo, heatmap_inv(lo, hi));
  heatmap_color(u, map, rgba);
  rgba[3] = 255;
  if (overlay_alpha >= 0.f) {
    volatile float a = u * std::min(overlay_alpha, 1.f);
    rgba[3] = level_of(a);
  }
}

HeatmapPreview::HeatmapPreview(Context& ctx, int height, int width, int slots)
    : ctx_(ctx), height_(height), width_(width), slots_(slots) {
  if (height < 1 || width < 1 || slots < 1)
    fail("HeatmapPreview: bad geometry " + std::to_string(height) + "x" + std::to_string(width) + ", " +
         std::to_string(slots) + " slots");
  // The colour tables, written once (8-bit levels as floats), shared by every slot.
  const auto& tables = color_tables();
  table_ = std::make_unique<Buffer>(ctx, tables.size() * sizeof(float), Buffer::Use::HostTexel, "preview heatmap colours");
  float* t = (float*)table_->mapped();
  for (size_t i = 0; i < tables.size(); ++i) t[i] = (float)tables[i];
  slots_impl_ = std::make_unique<PreviewSlots>(ctx, "HeatmapPreview", "heatmap", slots, (uint64_t)height * width,
                                               (uint64_t)height * width, std::vector<const Buffer*>{table_.get()});
}

HeatmapPreview::~HeatmapPreview() = default;

VkBuffer HeatmapPreview::output_buffer() const { return slots_impl_->output_buffer(); }

VkDeviceSize HeatmapPreview::output_offset(int slot) const { return slots_impl_->output_offset(slot); }

void HeatmapPreview::record(VkCommandBuffer cb, int slot, const float* values, float lo, float hi, ColorMap map,
                            float overlay_alpha) {
  slots_impl_->check_slot(slot);
  const size_t plane = (size_t)height_ * width_;
  std::memcpy(slots_impl_->input(slot), values, plane * sizeof(float));

  HeatPush pc{};
  pc.count = (uint32_t)plane;
  pc.map = (uint32_t)map_index(map);
  pc.lo = lo;
  pc.inv = heatmap_inv(lo, hi);
  pc.overlay = overlay_alpha >= 0.f ? std::min(overlay_alpha, 1.f) : -1.f;

  slots_impl_->record(cb, slot, &pc, sizeof pc);
}

Image HeatmapPreview::render(const std::vector<float>& values, float lo, float hi, ColorMap map, float overlay_alpha) {
  const size_t plane = (size_t)height_ * width_;
  if (values.size() != plane)
    fail("HeatmapPreview::render: " + std::to_string(values.size()) + " values, expected " + std::to_string(height_) +
         "x" + std::to_string(width_));
  map_index(map);  // before a command buffer is begun
  VkCommandBuffer cb = ctx_.begin_commands();
  record(cb, 0, values.data(), lo, hi, map, overlay_alpha);
  ctx_.submit_and_wait(cb);
  Image img(width_, height_, 4);
  download_bytes(ctx_, output_buffer(), output_offset(0), img.pixels.data(), plane * 4);
  return img;
}

}  // namespace vksd
