#include "runtime/model/sdxl_text.h"

#include <cstdlib>
#include <filesystem>
#include <set>

#include "runtime/error.h"
#include "runtime/io/file_check.h"
#include "runtime/io/json.h"
#include "runtime/model/diffusers.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"

namespace fs = std::filesystem;

namespace vksd {

namespace {

std::string list_some(const std::vector<std::string>& v, size_t max = 8) {
  std::string r;
  for (size_t i = 0; i < v.size() && i < max; ++i) r += "\n  " + v[i];
  if (v.size() > max) r += "\n  ... and " + std::to_string(v.size() - max) + " more";
  return r;
}

const char* encoder_name(int e) { return e == 0 ? "CLIP ViT-L text encoder" : "OpenCLIP ViT-bigG text encoder"; }

}  // namespace

SdxlTextConfig sdxl_text_defaults() {
  SdxlTextConfig c;
  c.clip_l = ClipConfig{};  // OpenAI CLIP ViT-L/14: 768 wide, 12 layers, 12 heads, quick-GELU, pads with EOS
  c.clip_l.skip_last_layers = 1;  // SDXL reads hidden_states[11]: the penultimate layer
  c.clip_g.width = 1280;
  c.clip_g.layers = 32;
  c.clip_g.heads = 20;
  c.clip_g.mlp_dim = 5120;
  c.clip_g.quick_gelu = false;  // open_clip: exact (erf) GELU
  c.clip_g.pad_token = 0;       // open_clip.tokenize pads with 0
  c.clip_g.skip_last_layers = 0;  // the last layer feeds the pooled vector
  c.projection_dim = 1280;
  return c;
}

std::vector<SdxlTextKey> sdxl_single_file_text_keys(const std::string& key, const Shape& shape) {
  if (key.starts_with(kSdxlClipLPrefix)) {
    const std::string rest = key.substr(std::string(kSdxlClipLPrefix).size());
    if (rest.empty() || rest.ends_with(".position_ids")) return {};
    return {{0, {kClipPrefix + rest}}};
  }
  if (key.starts_with(kSdxlClipGPrefix)) {
    const std::string rest = key.substr(std::string(kSdxlClipGPrefix).size());
    if (rest == "text_projection") return {{1, {kSdxlTextProjection}}};
    std::vector<SdxlTextKey> r;
    for (KeySlice& k : openclip_text_keys(rest, shape)) {
      // openclip_text_keys names what it does not know by the SD 2.x prefix: keep SDXL's name
      // for it so that validation reports the key as stored.
      if (k.name.starts_with(kOpenClipPrefix)) k.name = key;
      r.push_back({1, k});
    }
    return r;
  }
  return {};
}

SdxlTextWeights::~SdxlTextWeights() = default;
SdxlTextWeights::SdxlTextWeights(SdxlTextWeights&&) noexcept = default;

void SdxlTextWeights::add(int encoder, const std::string& name, const SafetensorsFile& f, const std::string& stored,
                          Shape shape, int64_t row0, bool transpose) {
  auto [it, fresh] = entries_[encoder].emplace(name, Entry{&f, stored, std::move(shape), row0, transpose});
  if (!fresh)
    fail(f.path() + ": tensor '" + stored + "' maps to " + encoder_name(encoder) + " '" + name + "', which '" +
         it->second.stored + "' already provides");
}

SdxlTextWeights SdxlTextWeights::open(const std::string& path, int heads_l, int heads_g, bool check_heads) {
  SdxlTextWeights w;
  w.path_ = path;
  require_file_or_directory(path, "model");
  if (path_kind(path) != PathKind::Directory) {
    w.files_.push_back(std::make_unique<SafetensorsFile>(path));
    const SafetensorsFile& f = *w.files_.back();
    for (const StTensor& t : f.tensors())
      for (const SdxlTextKey& k : sdxl_single_file_text_keys(t.name, t.shape)) {
        Shape shape = t.shape;
        if (k.slice.rows >= 0) shape[0] = k.slice.rows;
        w.add(k.encoder, k.slice.name, f, t.name, shape, k.slice.row0);
      }
  } else {
    // Diffusers: text_encoder/ (CLIPTextModel) and text_encoder_2/ (CLIPTextModelWithProjection),
    // each with a config.json that states its head count.
    const fs::path root(path);
    const char* dirs[2] = {"text_encoder", "text_encoder_2"};
    int* heads[2] = {&heads_l, &heads_g};
    for (int e = 0; e < 2; ++e) {
      const fs::path dir = root / dirs[e];
      std::string file;
      for (const char* name : {"model.safetensors", "model.fp16.safetensors"})
        if (fs::is_regular_file(dir / name)) {
          file = (dir / name).string();
          break;
        }
      if (file.empty()) fail(dir.string() + ": no model.safetensors (or model.fp16.safetensors): not an SDXL diffusers folder");
      const fs::path cfg = dir / "config.json";
      if (fs::is_regular_file(cfg) && *heads[e] <= 0) {
        Json j;
        try {
          j = Json::parse(read_regular_file(cfg.string(), "config file"));
        } catch (const Error& err) {
          fail(cfg.string() + ": " + err.what());
        }
        *heads[e] = (int)j.int_or("num_attention_heads", 0);
      }
      w.files_.push_back(std::make_unique<SafetensorsFile>(file));
      const SafetensorsFile& f = *w.files_.back();
      std::vector<std::string> unmapped;
      for (const StTensor& t : f.tensors()) {
        if (t.name.ends_with(".position_ids")) continue;
        if (e == 1 && t.name == "text_projection.weight") {
          if (t.shape.size() != 2) fail(f.path() + ": text_projection.weight has shape " + shape_str(t.shape) + ", expected [proj, width]");
          w.add(e, kSdxlTextProjection, f, t.name, {t.shape[1], t.shape[0]}, 0, /*transpose=*/true);
          continue;
        }
        const std::string name = diffusers_clip_key(t.name);
        if (name.empty()) unmapped.push_back(t.name);
        else w.add(e, name, f, t.name, t.shape);
      }
      if (!unmapped.empty())
        fail(f.path() + ": " + std::to_string(unmapped.size()) + " tensor(s) are not part of a CLIP text model:" +
             list_some(unmapped));
    }
  }
  w.infer_and_validate(heads_l, heads_g, check_heads);
  return w;
}

void SdxlTextWeights::infer_and_validate(int heads_l, int heads_g, bool check_heads) {
  auto shape_of = [&](int e, const std::string& name, size_t rank) -> const Shape& {
    auto it = entries_[e].find(name);
    if (it == entries_[e].end())
      fail(path_ + ": the " + std::string(encoder_name(e)) + " is missing '" + name + "'" +
           (entries_[e].empty() ? std::string(" (no tensors of it at all: not an SDXL base checkpoint?)") : ""));
    const Shape& s = it->second.shape;
    bool ok = s.size() == rank;
    for (int64_t d : s) ok = ok && d > 0 && d <= (1 << 24);
    if (!ok)
      fail(it->second.file->path() + ": '" + it->second.stored + "' has shape " + shape_str(s) + ", expected " +
           std::to_string(rank) + " dimensions between 1 and 16777216");
    return s;
  };
  const std::string P = kClipPrefix;
  ClipConfig* clips[2] = {&cfg_.clip_l, &cfg_.clip_g};
  const int heads[2] = {heads_l, heads_g};
  for (int e = 0; e < 2; ++e) {
    ClipConfig& c = *clips[e];
    const Shape& tok = shape_of(e, P + "embeddings.token_embedding.weight", 2);
    c.vocab_size = (int)tok[0];
    c.width = (int)tok[1];
    c.max_length = (int)shape_of(e, P + "embeddings.position_embedding.weight", 2)[0];
    c.layers = 0;
    while (entries_[e].count(P + "encoder.layers." + std::to_string(c.layers) + ".layer_norm1.weight")) ++c.layers;
    if (c.layers <= c.skip_last_layers)
      fail(path_ + ": the " + std::string(encoder_name(e)) + " has " + std::to_string(c.layers) + " layer(s); SDXL needs at least " +
           std::to_string(c.skip_last_layers + 1) + (e == 1 ? " (and 2 for the penultimate layer)" : ""));
    c.mlp_dim = (int)shape_of(e, P + "encoder.layers.0.mlp.fc1.weight", 2)[0];
    if (heads[e] > 0) c.heads = heads[e];
    if (check_heads && (c.heads <= 0 || c.width % c.heads))
      fail(path_ + ": the " + std::string(encoder_name(e)) + " is " + std::to_string(c.width) + " wide, not divisible into " +
           std::to_string(c.heads) + " heads");
  }
  if (cfg_.clip_g.layers < 2) fail(path_ + ": the OpenCLIP ViT-bigG text encoder needs 2 layers or more (SDXL reads the penultimate)");
  cfg_.projection_dim = (int)shape_of(1, kSdxlTextProjection, 2)[1];

  for (int e = 0; e < 2; ++e) {
    std::vector<TensorSpec> want = clip_layout(*clips[e]);
    if (e == 1) want.push_back({kSdxlTextProjection, {cfg_.clip_g.width, cfg_.projection_dim}});
    std::vector<std::string> missing, wrong, unexpected;
    std::set<std::string> expected;
    for (const TensorSpec& s : want) {
      expected.insert(s.name);
      auto it = entries_[e].find(s.name);
      if (it == entries_[e].end()) missing.push_back(s.name);
      else if (it->second.shape != s.shape)
        wrong.push_back(it->second.stored + " has shape " + shape_str(it->second.shape) + ", expected " + shape_str(s.shape));
    }
    for (const auto& [name, entry] : entries_[e])
      if (!expected.count(name)) unexpected.push_back(entry.stored);
    if (!missing.empty() || !wrong.empty() || !unexpected.empty()) {
      std::string msg = path_ + ": the " + encoder_name(e) + " does not match its inferred architecture";
      if (!wrong.empty()) msg += "\nwrong shape " + std::to_string(wrong.size()) + ":" + list_some(wrong);
      if (!missing.empty()) msg += "\nmissing " + std::to_string(missing.size()) + ":" + list_some(missing);
      if (!unexpected.empty()) msg += "\nunexpected " + std::to_string(unexpected.size()) + ":" + list_some(unexpected);
      fail(msg);
    }
    for (const auto& [name, entry] : entries_[e]) {
      const StDType dt = entry.file->at(entry.stored).dtype;
      if (dt == StDType::I32 || dt == StDType::I64)
        fail(entry.file->path() + ": " + entry.stored + ": weight stored as integer " + st_dtype_name(dt));
    }
  }
}

std::vector<float> SdxlTextWeights::read(const Entry& e) const {
  const StTensor& t = e.file->at(e.stored);
  std::vector<float> all = e.file->to_f32(t);
  const size_t n = (size_t)shape_numel(e.shape);
  if (e.transpose) {  // stored [rows, cols], used [cols, rows]
    const size_t rows = (size_t)t.shape[0], cols = (size_t)t.shape[1];
    std::vector<float> r(n);
    for (size_t i = 0; i < rows; ++i)
      for (size_t j = 0; j < cols; ++j) r[j * rows + i] = all[i * cols + j];
    return r;
  }
  if (n == all.size()) return all;
  const size_t row = all.size() / (size_t)t.shape[0];  // a slice of rows (fused q/k/v)
  const size_t begin = (size_t)e.row0 * row;
  if (begin + n > all.size()) fail(e.file->path() + ": " + e.stored + ": slice outside the stored tensor");
  return std::vector<float>(all.begin() + (ptrdiff_t)begin, all.begin() + (ptrdiff_t)(begin + n));
}

std::unique_ptr<WeightStore> SdxlTextWeights::upload(Context& ctx, int encoder, DType storage) const {
  if (encoder != 0 && encoder != 1) fail("SdxlTextWeights::upload: encoder " + std::to_string(encoder) + " (0 or 1)");
  const ClipConfig& c = encoder == 0 ? cfg_.clip_l : cfg_.clip_g;
  // Layers past the ones the model reads (CLIP-L's last) are not uploaded.
  auto used = [&](const std::string& name) {
    if (name == kSdxlTextProjection) return false;  // host-side, see text_projection()
    const std::string L = std::string(kClipPrefix) + "encoder.layers.";
    if (!name.starts_with(L)) return true;
    return std::atoi(name.c_str() + L.size()) < c.used_layers();
  };
  VkDeviceSize total = 0;
  for (const auto& [name, e] : entries_[encoder])
    if (used(name)) total += align_up(align_up((VkDeviceSize)shape_numel(e.shape) * dtype_size(storage), 16), kTensorAlignment);
  auto ws = std::make_unique<WeightStore>(ctx, storage, total);
  for (const auto& [name, e] : entries_[encoder])
    if (used(name)) ws->add(name, e.shape, read(e).data());
  return ws;
}

std::vector<float> SdxlTextWeights::text_projection() const { return read(entries_[1].at(kSdxlTextProjection)); }

int64_t SdxlTextWeights::parameter_count(int encoder) const {
  int64_t n = 0;
  for (const auto& [name, e] : entries_[encoder]) n += shape_numel(e.shape);
  return n;
}

}  // namespace vksd
