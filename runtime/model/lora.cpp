#include "runtime/model/lora.h"

#include <nettle/sha2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/error.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/diffusers.h"
#include "runtime/model/sd1_layout.h"

namespace fs = std::filesystem;

namespace vksd {

namespace {

std::string flat(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

// Keys of model families vksd does not run, with what to say about them.
const char* other_family(const std::string& key) {
  if (key.starts_with("lora_te1_") || key.starts_with("lora_te2_") || key.starts_with("text_encoder_2."))
    return "an SDXL LoRA (two text encoders: lora_te1_/lora_te2_)";
  if (key.starts_with("lora_transformer_") || key.starts_with("transformer.") ||
      key.starts_with("lora_unet_double_blocks_") || key.starts_with("lora_unet_single_blocks_"))
    return "a LoRA for a transformer model (SD3 / Flux)";
  return nullptr;
}

// The part of a key naming what the tensor is to its module.
struct Suffix {
  const char* text;
  enum { Down, Up, Alpha, Refused } role;
  const char* why = nullptr;
};
const Suffix kSuffixes[] = {
    {".lora_down.weight", Suffix::Down},
    {".lora_up.weight", Suffix::Up},
    {".lora_A.weight", Suffix::Down},
    {".lora_B.weight", Suffix::Up},
    {".lora.down.weight", Suffix::Down},
    {".lora.up.weight", Suffix::Up},
    {".alpha", Suffix::Alpha},
    {".lora_mid.weight", Suffix::Refused, "a LoCon layer with a Tucker core (lora_mid)"},
    {".dora_scale", Suffix::Refused, "DoRA (dora_scale)"},
    {".hada_w1_a", Suffix::Refused, "a LyCORIS LoHa layer"},
    {".hada_w1_b", Suffix::Refused, "a LyCORIS LoHa layer"},
    {".hada_w2_a", Suffix::Refused, "a LyCORIS LoHa layer"},
    {".hada_w2_b", Suffix::Refused, "a LyCORIS LoHa layer"},
    {".lokr_w1", Suffix::Refused, "a LyCORIS LoKr layer"},
    {".lokr_w2", Suffix::Refused, "a LyCORIS LoKr layer"},
    {".diff", Suffix::Refused, "a full weight difference (diff)"},
    {".diff_b", Suffix::Refused, "a full bias difference (diff_b)"},
};

}  // namespace

// ---- the file on its own ---------------------------------------------------------------------

LoraFile::LoraFile(const std::string& path) : file_(path) {
  const std::string& p = file_.path();
  std::map<std::string, LoraLayer> by_module;
  std::map<std::string, const StTensor*> alphas;
  for (const StTensor& t : file_.tensors()) {
    const std::string& k = t.name;
    if (const char* fam = other_family(k))
      fail(p + ": '" + k + "' is the key of " + fam + "; vksd runs SD 1.x and its LoRAs only");
    const Suffix* suffix = nullptr;
    for (const Suffix& s : kSuffixes)
      if (k.ends_with(s.text)) {
        suffix = &s;
        break;
      }
    if (!suffix) fail(p + ": '" + k + "' is not a LoRA tensor (expected lora_down/lora_up/alpha or lora_A/lora_B keys)");
    if (suffix->role == Suffix::Refused) fail(p + ": '" + k + "' belongs to " + suffix->why + ", which vksd does not apply (LoRA and LoCon only)");
    const std::string module = k.substr(0, k.size() - std::string(suffix->text).size());
    LoraLayer l;
    l.key = module;
    if (module.starts_with("lora_unet_")) l.net = LoraNet::UNet, l.kohya = true;
    else if (module.starts_with("lora_te_")) l.net = LoraNet::TextEncoder, l.kohya = true;
    else if (module.starts_with("unet.") || module.starts_with("base_model.model.")) l.net = LoraNet::UNet, l.kohya = false;
    else if (module.starts_with("text_encoder.")) l.net = LoraNet::TextEncoder, l.kohya = false;
    else fail(p + ": '" + k + "': a LoRA key must start with lora_unet_, lora_te_, unet. or text_encoder.");
    if (suffix->role == Suffix::Alpha) {
      if (t.numel() != 1) fail(p + ": '" + k + "' (alpha) has shape " + shape_str(t.shape) + ", expected a scalar");
      if (t.dtype != StDType::F32 && t.dtype != StDType::F16 && t.dtype != StDType::BF16)
        fail(p + ": '" + k + "' (alpha) is " + st_dtype_name(t.dtype) + ", expected a float");
      alphas[module] = &t;
      continue;
    }
    if (t.dtype != StDType::F32 && t.dtype != StDType::F16 && t.dtype != StDType::BF16)
      fail(p + ": '" + k + "' is " + st_dtype_name(t.dtype) + ", expected F32, F16 or BF16");
    auto [it, fresh] = by_module.emplace(module, l);
    const StTensor*& slot = suffix->role == Suffix::Down ? it->second.down : it->second.up;
    if (slot) fail(p + ": '" + k + "': module '" + module + "' has two " + (suffix->role == Suffix::Down ? "down" : "up") + " tensors");
    slot = &t;
  }
  for (auto& [module, a] : alphas)
    if (!by_module.count(module)) fail(p + ": '" + module + ".alpha' has no lora_down/lora_up pair");
  for (auto& [module, l] : by_module) {
    if (!l.down) fail(p + ": module '" + module + "' has an up tensor but no down tensor (lora_down / lora_A)");
    if (!l.up) fail(p + ": module '" + module + "' has a down tensor but no up tensor (lora_up / lora_B)");
    const Shape& d = l.down->shape;
    const Shape& u = l.up->shape;
    if (d.size() != 2 && d.size() != 4)
      fail(p + ": '" + l.down->name + "' has shape " + shape_str(d) + ", expected [rank, in] or [rank, in, kh, kw]");
    if (u.size() != d.size() || (u.size() == 4 && (u[2] != 1 || u[3] != 1)))
      fail(p + ": '" + l.up->name + "' has shape " + shape_str(u) + ", expected [out, rank]" +
           (d.size() == 4 ? " as a 1x1 conv [out, rank, 1, 1]" : "") + " to go with down " + shape_str(d));
    if (d[0] < 1 || u[1] != d[0])
      fail(p + ": module '" + module + "': up " + shape_str(u) + " and down " + shape_str(d) + " disagree on the rank");
    for (int64_t v : d)
      if (v < 1) fail(p + ": '" + l.down->name + "' has an empty shape " + shape_str(d));
    if (u[0] < 1) fail(p + ": '" + l.up->name + "' has an empty shape " + shape_str(u));
    l.rank = d[0];
    l.alpha = (double)l.rank;
    if (auto a = alphas.find(module); a != alphas.end()) {
      l.alpha = file_.to_f32(*a->second)[0];
      l.has_alpha = true;
      if (!std::isfinite(l.alpha)) fail(p + ": '" + module + ".alpha' is not a finite number");
    }
    layers_.push_back(l);
  }
  if (layers_.empty()) fail(p + ": no LoRA layers (lora_down/lora_up or lora_A/lora_B tensors) in this file");
}

std::string LoraFile::name() const { return fs::path(path()).stem().string(); }

std::string LoraFile::format() const {
  bool kohya = false, peft = false;
  for (const auto& l : layers_) (l.kohya ? kohya : peft) = true;
  return kohya && peft ? "kohya + diffusers/PEFT" : kohya ? "kohya" : "diffusers/PEFT";
}

const std::string& LoraFile::short_hash() const {
  if (hash_.empty()) hash_ = lora_short_hash(path());
  return hash_;
}

std::string lora_short_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint8_t len[8];
  if (!in.read((char*)len, 8)) fail(path + ": cannot read");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  in.seekg((std::streamoff)(8 + n));
  sha256_ctx ctx;
  sha256_init(&ctx);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), (std::streamsize)buf.size());
    if (in.gcount() > 0) sha256_update(&ctx, (size_t)in.gcount(), (const uint8_t*)buf.data());
  }
  uint8_t digest[SHA256_DIGEST_SIZE];
  sha256_digest(&ctx, SHA256_DIGEST_SIZE, digest);
  char hex[2 * SHA256_DIGEST_SIZE + 1];
  for (int i = 0; i < SHA256_DIGEST_SIZE; ++i) std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return std::string(hex, 12);
}

std::vector<double> LoraFile::up_matrix(const LoraLayer& l) const {
  std::vector<float> f = file_.to_f32(*l.up);
  return {f.begin(), f.end()};
}

std::vector<double> LoraFile::down_matrix(const LoraLayer& l) const {
  std::vector<float> f = file_.to_f32(*l.down);
  return {f.begin(), f.end()};
}

// ---- binding to a checkpoint -----------------------------------------------------------------

namespace {

// The checkpoint's UNet / text-encoder weights by the '_'-joined name kohya derives from the
// original LDM layout ("input_blocks_1_1_proj_in"; text encoder: "text_model_encoder_...").
struct FlatNames {
  std::map<std::string, std::string> unet, text;
};

FlatNames flat_names(const Checkpoint& ck) {
  FlatNames f;
  const std::string w = ".weight";
  for (const auto& n : ck.tensor_names(kUNetPrefix))
    if (n.ends_with(w)) f.unet[flat(n.substr(std::string(kUNetPrefix).size(), n.size() - std::string(kUNetPrefix).size() - w.size()))] = n;
  for (const auto& n : ck.tensor_names(kClipPrefix))
    if (n.ends_with(w)) f.text["text_model_" + flat(n.substr(std::string(kClipPrefix).size(), n.size() - std::string(kClipPrefix).size() - w.size()))] = n;
  return f;
}

// kohya's diffusers-path names lost the dots: find the dotted diffusers module path whose
// '_'-joined form is `name` and which the diffusers renaming maps onto a weight of the
// checkpoint, by trying '.' or '_' at every '_' (names have about a dozen, and the renaming
// rejects a wrong structure at its first component).
std::string unet_from_diffusers_flat(const std::string& name, const DiffusersUNetShape& s, const Checkpoint& ck) {
  std::vector<size_t> us;
  for (size_t i = 0; i < name.size(); ++i)
    if (name[i] == '_') us.push_back(i);
  if (us.size() > 18) return "";
  std::string cand = name;
  for (uint32_t mask = 0; mask < (1u << us.size()); ++mask) {
    for (size_t b = 0; b < us.size(); ++b) cand[us[b]] = (mask >> b) & 1 ? '_' : '.';
    std::string orig = diffusers_unet_key(cand + ".weight", s);
    if (!orig.empty() && ck.has(orig)) return orig;
  }
  return "";
}

}  // namespace

BoundLora::BoundLora(std::shared_ptr<const LoraFile> file, const Checkpoint& ck) : file_(std::move(file)) {
  const std::string& p = file_->path();
  const FlatNames names = flat_names(ck);
  const UNetConfig& uc = ck.config().unet;
  DiffusersUNetShape shape;
  shape.levels = (int)uc.channel_mult.size();
  shape.layers_per_block = uc.num_res_blocks;
  shape.attention = uc.attention_levels;

  std::vector<std::string> unmatched;
  for (const LoraLayer& l : file_->layers()) {
    std::string target;
    if (l.kohya) {
      const bool unet = l.net == LoraNet::UNet;
      const std::string rest = l.key.substr(unet ? 10 : 8);  // after lora_unet_ / lora_te_
      const auto& m = unet ? names.unet : names.text;
      if (auto it = m.find(rest); it != m.end()) target = it->second;
      else if (unet) target = unet_from_diffusers_flat(rest, shape, ck);
    } else if (l.net == LoraNet::UNet) {
      const std::string path = l.key.substr(l.key.starts_with("unet.") ? 5 : 17);  // unet. / base_model.model.
      if (ck.has(kUNetPrefix + path + ".weight")) target = kUNetPrefix + path + ".weight";
      else target = diffusers_unet_key(path + ".weight", shape);
    } else {
      target = diffusers_clip_key(l.key.substr(13) + ".weight");  // after text_encoder.
    }
    if (target.empty() || !ck.has(target)) {
      unmatched.push_back(l.key);
      continue;
    }
    // The product B . A is [out, rank] x [rank, in*kh*kw]: it must have the weight's size, and a
    // conv kernel's spatial size when both are convs.
    const Shape& ws = ck.shape(target);
    const Shape& d = l.down->shape;
    const int64_t out = l.up->shape[0], in = shape_numel(d) / d[0];
    const bool fits = ws.size() >= 2 && out == ws[0] && in * ws[0] == shape_numel(ws) &&
                      (d.size() != 4 || ws.size() != 4 || (d[1] == ws[1] && d[2] == ws[2] && d[3] == ws[3]));
    if (!fits)
      fail(p + ": LoRA layer '" + l.key + "' (up " + shape_str(l.up->shape) + ", down " + shape_str(d) + ") does not fit '" +
           target + "' " + shape_str(ws) + " of this model: the LoRA was made for another model (family or size)");
    targets_[target].push_back(&l);
  }
  if (!unmatched.empty()) {
    std::string list;
    for (size_t i = 0; i < unmatched.size() && i < 5; ++i) list += "\n  " + unmatched[i];
    if (unmatched.size() > 5) list += "\n  ... and " + std::to_string(unmatched.size() - 5) + " more";
    fail(p + ": " + std::to_string(unmatched.size()) + " of " + std::to_string(file_->layers().size()) +
         " LoRA layers match no layer of this model (" + ck.config().name +
         "); was the LoRA made for another model family (SD 2.x, SDXL)?" + list);
  }
}

bool BoundLora::touches(const std::string& prefix) const {
  for (const auto& [t, ls] : targets_)
    if (t.starts_with(prefix)) return true;
  return false;
}

// ---- merging ---------------------------------------------------------------------------------

bool apply_loras(const std::vector<ActiveLora>& loras, const std::string& name, const Shape& shape,
                 std::vector<float>& data) {
  std::vector<double> acc;
  for (const ActiveLora& a : loras) {
    auto it = a.lora->targets().find(name);
    if (it == a.lora->targets().end()) continue;
    if (acc.empty()) acc.assign(data.begin(), data.end());
    const int64_t out = shape[0], in = shape_numel(shape) / shape[0];
    for (const LoraLayer* l : it->second) {
      const std::vector<double> up = a.lora->file().up_matrix(*l), down = a.lora->file().down_matrix(*l);
      const int64_t r = l->rank;
      const double scale = a.weight * l->alpha / (double)r;
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          double s = 0;
          for (int64_t k = 0; k < r; ++k) s += up[o * r + k] * down[k * in + i];
          acc[o * in + i] += scale * s;
        }
    }
  }
  if (acc.empty()) return false;
  for (size_t i = 0; i < data.size(); ++i) data[i] = (float)acc[i];
  return true;
}

std::set<std::string> lora_targets(const std::vector<ActiveLora>& loras, const std::string& prefix) {
  std::set<std::string> r;
  for (const ActiveLora& a : loras)
    for (const auto& [t, ls] : a.lora->targets())
      if (t.starts_with(prefix)) r.insert(t);
  return r;
}

// ---- description -----------------------------------------------------------------------------

LoraSummary summarize_lora(const LoraFile& f) {
  LoraSummary s;
  s.format = f.format();
  bool first = true;
  for (const LoraLayer& l : f.layers()) {
    (l.net == LoraNet::UNet ? s.unet_layers : s.text_layers)++;
    if (l.conv() && (l.down->shape[2] > 1 || l.down->shape[3] > 1)) s.conv_layers++;
    if (!l.has_alpha) s.layers_without_alpha++;
    s.min_rank = first ? l.rank : std::min(s.min_rank, l.rank);
    s.max_rank = first ? l.rank : std::max(s.max_rank, l.rank);
    s.min_alpha = first ? l.alpha : std::min(s.min_alpha, l.alpha);
    s.max_alpha = first ? l.alpha : std::max(s.max_alpha, l.alpha);
    s.parameters += l.down->numel() + l.up->numel();
    first = false;
  }
  for (const char* k : {"ss_base_model_version", "ss_sd_model_name", "ss_network_module", "ss_network_dim",
                        "ss_network_alpha", "ss_output_name", "ss_resolution"})
    if (auto it = f.file().metadata().find(k); it != f.file().metadata().end()) s.metadata[k] = it->second;
  return s;
}

bool is_lora_file(const SafetensorsFile& f) {
  for (const StTensor& t : f.tensors())
    for (const char* s : {".lora_down.weight", ".lora_A.weight", ".lora.down.weight", ".hada_w1_a", ".lokr_w1"})
      if (t.name.ends_with(s)) return true;
  return false;
}

}  // namespace vksd
