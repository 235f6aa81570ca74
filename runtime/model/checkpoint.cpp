#include "runtime/model/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/model/diffusers.h"
#include "runtime/model/model_family.h"
#include "runtime/model/openclip_keys.h"
#include "runtime/error.h"
#include "runtime/diffusion/schedule.h"
#include "runtime/io/file_check.h"
#include "runtime/io/json.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/staging.h"

namespace fs = std::filesystem;

namespace vksd {

const char* checkpoint_format_name(CheckpointFormat f) {
  return f == CheckpointFormat::Diffusers ? "diffusers folder" : "single-file safetensors";
}

namespace {

std::string read_text_file(const std::string& path) { return read_regular_file(path, "config file"); }

Json read_json_file(const std::string& path) {
  std::string text = read_text_file(path);
  try {
    return Json::parse(text);
  } catch (const Error& e) {
    fail(path + ": " + e.what());
  }
}

// Tensors under a network prefix that are bookkeeping, not weights.
bool is_ignorable_network_tensor(const std::string& name) { return name.ends_with(".position_ids"); }

bool is_network_name(const std::string& n, const ModelConfig& cfg) {
  if (n.starts_with(kUNetPrefix) || n.starts_with(kVaePrefix)) return true;
  for (const ClipConfig& c : cfg.text_encoders())
    if (n.starts_with(c.prefix)) return true;
  return false;
}

// A name under kClipPrefix (what openclip_text_keys and diffusers_clip_key give) moved to
// encoder `c`'s prefix.
std::string under_prefix(const std::string& clip_name, const ClipConfig& c) {
  return c.prefix + clip_name.substr(std::string(kClipPrefix).size());
}

// The VAE attention's q/k/v/proj_out are 1x1 convs in LDM but linears in diffusers (and in
// some single files converted from it): the same bytes, viewed as [C,C,1,1].
bool is_vae_attention_projection(const std::string& n) {
  if (!n.starts_with(kVaePrefix) || n.find(".mid.attn_1.") == std::string::npos || !n.ends_with(".weight"))
    return false;
  for (const char* p : {".q.weight", ".k.weight", ".v.weight", ".proj_out.weight"})
    if (n.ends_with(p)) return true;
  return false;
}

// The `parameterization:` of an LDM inference yaml ("v" or "eps"; "" when it has none), read
// line by line: the one scalar vksd takes from such a file needs no YAML parser.
std::string ldm_yaml_parameterization(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t k = line.find("parameterization:");
    if (k == std::string::npos || line.find_first_not_of(" \t") != k) continue;
    std::string v = line.substr(k + 17);
    if (const size_t hash = v.find('#'); hash != std::string::npos) v.erase(hash);
    std::string clean;
    for (char c : v)
      if (c != ' ' && c != '\t' && c != '"' && c != '\'' && c != '\r') clean += c;
    return clean;
  }
  return "";
}

std::string list_some(const std::vector<std::string>& v, size_t max = 8) {
  std::string r;
  for (size_t i = 0; i < v.size() && i < max; ++i) r += "\n  " + v[i];
  if (v.size() > max) r += "\n  ... and " + std::to_string(v.size() - max) + " more";
  return r;
}

}  // namespace

// ---- opening ---------------------------------------------------------------------------------

Checkpoint Checkpoint::open(const std::string& path, const std::string& config_path) {
  return open_impl(path, config_path, nullptr);
}

Checkpoint Checkpoint::open_with_config_text(const std::string& path, const std::string& config_json) {
  return open_impl(path, "", &config_json);
}

void Checkpoint::add_tensor(const std::string& name, const SafetensorsFile& f, const StTensor& t, Shape shape,
                            int64_t row0, bool transpose) {
  auto [it, fresh] = tensors_.emplace(name, Entry{&f, &t, std::move(shape), row0, transpose});
  if (!fresh)
    fail(f.path() + ": tensor '" + t.name + "' maps to '" + name + "', which " + source(name) + " already provides");
}

Checkpoint Checkpoint::open_impl(const std::string& path, const std::string& config_path, const std::string* config_text) {
  Checkpoint ck;
  ck.path_ = path;
  require_file_or_directory(path, "model");

  if (path_kind(path) == PathKind::Directory) {
    ck.format_ = CheckpointFormat::Diffusers;
    ck.config_.name = fs::path(path).lexically_normal().filename().string();
    if (ck.config_.name.empty() || ck.config_.name == ".")
      ck.config_.name = fs::absolute(path).lexically_normal().parent_path().filename().string();
    ck.load_diffusers_folder();
  } else {
    ck.format_ = CheckpointFormat::SingleFile;
    ck.config_.name = fs::path(path).stem().string();
    for (const char* ext : {".ckpt", ".pt", ".pth", ".bin"})
      if (path.ends_with(ext))
        fail(path + ": PyTorch pickle checkpoints are not supported (they can run arbitrary code); "
                    "convert it to .safetensors first");
    ck.load_single_file();
  }
  ck.config_sources_.insert(ck.config_sources_.begin(),
                            std::string(model_family_name(ck.config_.family)) + " defaults + tensor shapes");
  ck.infer_architecture();
  for (auto& [component, file] : ck.diffusers_configs_) {
    try {
      apply_diffusers_config(ck.config_, component, read_json_file(file), file);
    } catch (const Error& e) {  // e.g. a JSON type error: say which file it is in
      const std::string m = e.what();
      if (m.rfind(file, 0) != 0) fail(file + ": " + m);
      throw;
    }
    ck.config_sources_.push_back(file);
  }
  // AUTOMATIC1111's convention for SD 2.x 768-v single files: the LDM inference yaml beside the
  // checkpoint, <name>.yaml, whose `parameterization: "v"` says what the file cannot.
  if (ck.format_ == CheckpointFormat::SingleFile) {
    const fs::path yaml = fs::path(path).parent_path() / (fs::path(path).stem().string() + ".yaml");
    if (fs::is_regular_file(yaml)) {
      const std::string p = ldm_yaml_parameterization(read_text_file(yaml.string()));
      if (!p.empty()) ck.set_prediction_type(p, yaml.string());
    }
  }

  // The vksd model config: explicit text, explicit path, or found beside the checkpoint.
  if (config_text) {
    Json j;
    try {
      j = Json::parse(*config_text);
    } catch (const Error& e) {
      fail(std::string("model config text: ") + e.what());
    }
    // Config text has no file of its own: its relative paths mean the checkpoint's folder.
    const fs::path model_dir = ck.format_ == CheckpointFormat::Diffusers ? fs::path(path) : fs::path(path).parent_path();
    apply_model_config_json(ck.config_, j, "model config text", &ck.config_ignored_, model_dir.string());
    ck.config_sources_.push_back("model config text");
  } else {
    std::string cfg = config_path;
    if (cfg.empty()) {
      std::vector<fs::path> candidates;
      if (ck.format_ == CheckpointFormat::Diffusers) {
        candidates = {fs::path(path) / "vksd.json"};
      } else {
        fs::path p(path);
        candidates = {p.parent_path() / (p.stem().string() + ".vksd.json"), p.parent_path() / (p.stem().string() + ".json")};
      }
      for (const auto& c : candidates)
        if (fs::is_regular_file(c)) {
          cfg = c.string();
          break;
        }
    } else {
      require_regular_file(cfg, "model config (--config)");
    }
    if (!cfg.empty()) {
      apply_model_config_json(ck.config_, read_json_file(cfg), cfg, &ck.config_ignored_,
                              fs::path(cfg).parent_path().string());
      ck.config_sources_.push_back(cfg);
    }
  }
  ck.validate();
  return ck;
}

void Checkpoint::load_single_file() {
  files_.push_back(std::make_unique<SafetensorsFile>(path_));
  const SafetensorsFile& f = *files_.back();
  std::vector<std::string> keys;
  for (const StTensor& t : f.tensors()) keys.push_back(t.name);
  apply_family_defaults(config_, single_file_family(keys, path_));
  for (const StTensor& t : f.tensors()) {
    std::string name = t.name;
    // Checkpoints saved with transformers < 4.x lack the "text_model." level.
    const std::string old_clip = "cond_stage_model.transformer.";
    if (name.starts_with(old_clip) && !name.starts_with(kClipPrefix)) {
      name = kClipPrefix + name.substr(old_clip.size());
    }
    // OpenCLIP towers (SD 2.x's, SDXL's bigG) under the CLIPTextModel names, fused q/k/v as three
    // slices; the text projection (pooled output) where the family uses one.
    ClipConfig* openclip = nullptr;
    for (size_t i = 0; i < config_.text_encoder_count(); ++i) {
      ClipConfig& c = config_.text_encoder(i);
      if (!c.openclip_prefix.empty() && name.starts_with(c.openclip_prefix)) openclip = &c;
    }
    if (openclip) {
      openclip->skip_last_layers = openclip->openclip_unused_layers;
      const std::string rest = name.substr(openclip->openclip_prefix.size());
      if (rest == "text_projection" && openclip->pooled_dim > 0) {
        add_tensor(openclip->prefix + "text_projection", f, t, t.shape);
        continue;
      }
      const auto slices = openclip_text_keys(rest, t.shape);
      if (slices.empty()) ignored_.push_back(f.path() + ": " + t.name);
      for (const KeySlice& k : slices) {
        Shape shape = t.shape;
        if (k.rows >= 0) shape[0] = k.rows;
        add_tensor(k.name.starts_with(kClipPrefix) ? under_prefix(k.name, *openclip) : k.name, f, t, shape, k.row0);
      }
      continue;
    }
    if (is_network_name(name, config_) && !is_ignorable_network_tensor(name)) {
      add_tensor(name, f, t, t.shape);
    } else {
      ignored_.push_back(f.path() + ": " + t.name);
      if (t.name == "alphas_cumprod") alphas_cumprod_ = f.to_f32(t);
    }
  }
}

void Checkpoint::load_diffusers_folder() {
  const fs::path root(path_);
  // One safetensors file per component: the full-precision one if present, else the fp16 variant.
  auto pick = [&](const std::string& dir, const std::string& base) -> std::string {
    for (const std::string& name : {base + ".safetensors", base + ".fp16.safetensors"}) {
      fs::path p = root / dir / name;
      if (fs::is_regular_file(p)) return p.string();
    }
    for (const char* ext : {".bin", ".fp16.bin", ".safetensors.index.json"})
      if (fs::exists(root / dir / (base + ext)))
        fail((root / dir).string() + ": only unsharded .safetensors weights are supported (found " + base + ext + ")");
    fail((root / dir).string() + ": no " + base + ".safetensors (or .fp16.safetensors); is '" + path_ +
         "' a diffusers Stable Diffusion folder?");
  };
  // The family first (a folder of another family may lack what an SD folder has).
  std::string pipeline_class, text_act;
  const fs::path index = root / "model_index.json", text_cfg = root / "text_encoder" / "config.json";
  if (fs::is_regular_file(index)) pipeline_class = read_json_file(index.string()).string_or("_class_name", "");
  if (fs::is_regular_file(text_cfg)) text_act = read_json_file(text_cfg.string()).string_or("hidden_act", "");
  apply_family_defaults(config_, diffusers_family(pipeline_class, text_act, fs::is_directory(root / "text_encoder_2"), path_));
  if (!pipeline_class.empty() && pipeline_class != "StableDiffusionPipeline" &&
      pipeline_class != "StableDiffusionInpaintPipeline" && pipeline_class != "StableDiffusionImg2ImgPipeline" &&
      pipeline_class != "StableDiffusionXLPipeline")
    fail(index.string() + ": pipeline class '" + pipeline_class + "' is not an SD 1.x / 2.x / SDXL text-to-image pipeline");
  if (!fs::is_directory(root / "unet") || !fs::is_directory(root / "vae") || !fs::is_directory(root / "text_encoder"))
    fail(path_ + ": a diffusers folder needs unet/, vae/ and text_encoder/ subfolders");

  struct Component {
    const char* dir;
    const char* base;
  };
  std::vector<Component> components = {{"unet", "diffusion_pytorch_model"}, {"vae", "diffusion_pytorch_model"},
                                       {"text_encoder", "model"}};
  // Further text encoders in text_encoder_2/, ... (SDXL: bigG as CLIPTextModelWithProjection).
  static const char* const kMoreEncoderDirs[] = {"text_encoder_2"};
  for (size_t i = 0; i < config_.more_text_encoders.size() && i < std::size(kMoreEncoderDirs); ++i)
    components.push_back({kMoreEncoderDirs[i], "model"});
  for (Component c : components) {
    files_.push_back(std::make_unique<SafetensorsFile>(pick(c.dir, c.base)));
    const SafetensorsFile& f = *files_.back();
    std::vector<std::string> keys;
    for (const auto& t : f.tensors()) keys.push_back(t.name);

    const std::string dir = c.dir;
    DiffusersUNetShape unet_shape;
    int vae_levels = 0;
    if (dir == "unet") unet_shape = diffusers_unet_shape(keys);
    if (dir == "vae") {
      for (const auto& k : keys)
        if (k.starts_with("encoder.down_blocks.")) vae_levels = std::max(vae_levels, std::atoi(k.c_str() + 20) + 1);
      if (vae_levels == 0) fail(f.path() + ": no encoder.down_blocks.* tensors: not a diffusers AutoencoderKL");
    }
    std::vector<std::string> unmapped;
    // Which text encoder a text_encoder* folder holds (0: text_encoder/, 1: text_encoder_2/).
    const ClipConfig* enc = dir == "text_encoder" ? &config_.clip : dir.starts_with("text_encoder_") ? &config_.more_text_encoders[(size_t)(std::atoi(dir.c_str() + 13) - 2)] : nullptr;
    for (const auto& t : f.tensors()) {
      if (enc && enc->pooled_dim > 0 && t.name == "text_projection.weight" && t.shape.size() == 2) {
        add_tensor(enc->prefix + "text_projection", f, t, {t.shape[1], t.shape[0]}, 0, /*transpose=*/true);
        continue;
      }
      std::string name = dir == "unet" ? diffusers_unet_key(t.name, unet_shape)
                         : dir == "vae" ? diffusers_vae_key(t.name, vae_levels)
                                        : diffusers_clip_key(t.name);
      if (enc && !name.empty()) name = under_prefix(name, *enc);
      if (name.empty()) unmapped.push_back(t.name);
      else if (is_ignorable_network_tensor(name)) ignored_.push_back(f.path() + ": " + t.name);
      else add_tensor(name, f, t, t.shape);
    }
    if (!unmapped.empty())
      fail(f.path() + ": " + std::to_string(unmapped.size()) +
           " tensor(s) have no counterpart in the original single-file layout (unsupported architecture?):" +
           list_some(unmapped));
    fs::path cfg = root / dir / "config.json";
    if (fs::is_regular_file(cfg)) diffusers_configs_.emplace_back(dir, cfg.string());
  }
  fs::path sched = root / "scheduler" / "scheduler_config.json";
  if (fs::is_regular_file(sched)) diffusers_configs_.emplace_back("scheduler", sched.string());
  if (fs::is_regular_file(root / "tokenizer" / "vocab.json")) tokenizer_vocab_ = (root / "tokenizer" / "vocab.json").string();
  if (fs::is_regular_file(root / "tokenizer" / "merges.txt")) tokenizer_merges_ = (root / "tokenizer" / "merges.txt").string();
}

// ---- architecture from shapes ----------------------------------------------------------------

const Checkpoint::Entry& Checkpoint::entry(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_ + ": missing tensor '" + name + "'");
  return it->second;
}

void Checkpoint::infer_architecture() {
  auto shape_of = [&](const std::string& name, size_t rank, const char* net) -> const Shape& {
    auto it = tensors_.find(name);
    if (it == tensors_.end())
      fail(path_ + ": cannot infer the " + net + " architecture: missing tensor '" + name + "'");
    if (it->second.shape.size() != rank)
      fail(path_ + ": tensor '" + name + "' has shape " + shape_str(it->second.shape) + ", expected rank " +
           std::to_string(rank));
    // Dimensions become channel counts and divisors below: zero (or beyond int) is no network.
    for (int64_t d : it->second.shape)
      if (d <= 0 || d > (1 << 24))
        fail(path_ + ": tensor '" + name + "' has shape " + shape_str(it->second.shape) + ": a " + net +
             " weight needs dimensions between 1 and 16777216");
    return it->second.shape;
  };
  auto exists = [&](const std::string& name) { return tensors_.count(name) != 0; };
  auto count_network = [&](const char* prefix) {
    size_t n = 0;
    for (auto& [k, v] : tensors_) n += k.starts_with(prefix);
    return n;
  };
  if (count_network(kUNetPrefix) == 0)
    fail(path_ + ": no UNet tensors (" + kUNetPrefix + "*): not a Stable Diffusion checkpoint");
  if (count_network(kVaePrefix) == 0) fail(path_ + ": no VAE tensors (" + kVaePrefix + "*)");
  if (count_network(config_.clip.prefix.c_str()) == 0)
    fail(path_ + ": no CLIP text encoder tensors (" + config_.clip.prefix + "* or " + kOpenClipPrefix + "*)");

  // UNet: walk input_blocks, classifying each as ResBlock (+ optional transformer) or Downsample.
  UNetConfig& u = config_.unet;
  const std::string U = kUNetPrefix;
  const Shape& conv_in = shape_of(U + "input_blocks.0.0.weight", 4, "UNet");
  u.model_channels = (int)conv_in[0];
  u.in_channels = (int)conv_in[1];
  u.out_channels = (int)shape_of(U + "out.2.weight", 4, "UNet")[0];
  std::vector<int> level_blocks = {0};
  u.channel_mult.clear();
  u.attention_levels.clear();
  std::vector<int> mult_of_level = {0};
  std::vector<bool> attn_of_level = {false};
  std::vector<int> depth_of_level = {0};
  // Transformer blocks of the SpatialTransformer at `p` (a key prefix ending in '.').
  auto depth_at = [&](const std::string& p) {
    int d = 0;
    while (exists(p + "transformer_blocks." + std::to_string(d) + ".norm1.weight")) ++d;
    return d;
  };
  std::string first_transformer;
  for (int b = 1;; ++b) {
    std::string p = U + "input_blocks." + std::to_string(b) + ".";
    if (exists(p + "0.op.weight")) {
      level_blocks.push_back(0);
      mult_of_level.push_back(0);
      attn_of_level.push_back(false);
      depth_of_level.push_back(0);
    } else if (exists(p + "0.in_layers.2.weight")) {
      int64_t out = shape_of(p + "0.in_layers.2.weight", 4, "UNet")[0];
      if (out % u.model_channels)
        fail(path_ + ": UNet block " + p + " has " + std::to_string(out) + " channels, not a multiple of " +
             std::to_string(u.model_channels));
      if (level_blocks.back() == 0) {
        mult_of_level.back() = (int)(out / u.model_channels);
        attn_of_level.back() = exists(p + "1.norm.weight");
        if (attn_of_level.back()) depth_of_level.back() = depth_at(p + "1.");
      }
      if (exists(p + "1.norm.weight") && first_transformer.empty()) first_transformer = p + "1.";
      level_blocks.back()++;
    } else {
      break;
    }
  }
  if (level_blocks.back() == 0) fail(path_ + ": UNet input_blocks end with a Downsample (unsupported layout)");
  for (size_t l = 0; l < level_blocks.size(); ++l)
    if (level_blocks[l] != level_blocks[0])
      fail(path_ + ": UNet levels have different numbers of ResBlocks (unsupported architecture)");
  u.num_res_blocks = level_blocks[0];
  u.channel_mult = mult_of_level;
  u.attention_levels = attn_of_level;
  // The middle block always holds a transformer: read context width, depth and proj kind there.
  const std::string mid = U + "middle_block.1.";
  u.context_dim = (int)shape_of(mid + "transformer_blocks.0.attn2.to_k.weight", 2, "UNet")[1];
  u.transformer_depth = depth_at(mid);
  // Per-level depths only where they differ (SDXL: 2 and 10 blocks; SD 1.x / 2.x: 1 everywhere).
  u.transformer_depths.clear();
  u.transformer_depth_middle = -1;
  for (size_t l = 0; l < depth_of_level.size(); ++l)
    if (attn_of_level[l] && depth_of_level[l] != u.transformer_depth) u.transformer_depths = depth_of_level;
  if (!u.transformer_depths.empty()) u.transformer_depth_middle = u.transformer_depth;
  // The vector input y (label_emb, SDXL's adm_in_channels).
  u.adm_in_channels = exists(U + "label_emb.0.0.weight") ? (int)shape_of(U + "label_emb.0.0.weight", 2, "UNet")[1] : 0;
  auto pi = tensors_.find(mid + "proj_in.weight");
  u.use_linear_in_transformer = pi != tensors_.end() && pi->second.shape.size() == 2;

  // VAE.
  VaeConfig& v = config_.vae;
  const std::string E = std::string(kVaePrefix) + "encoder.", D = std::string(kVaePrefix) + "decoder.";
  const Shape& vin = shape_of(E + "conv_in.weight", 4, "VAE");
  v.ch = (int)vin[0];
  v.in_channels = (int)vin[1];
  v.ch_mult.clear();
  for (int l = 0; exists(E + "down." + std::to_string(l) + ".block.0.conv1.weight"); ++l) {
    int64_t c = shape_of(E + "down." + std::to_string(l) + ".block.0.conv1.weight", 4, "VAE")[0];
    if (c % v.ch) fail(path_ + ": VAE level " + std::to_string(l) + " width " + std::to_string(c) + " is not a multiple of " + std::to_string(v.ch));
    v.ch_mult.push_back((int)(c / v.ch));
  }
  if (v.ch_mult.empty()) shape_of(E + "down.0.block.0.conv1.weight", 4, "VAE");
  v.num_res_blocks = 0;
  while (exists(E + "down.0.block." + std::to_string(v.num_res_blocks) + ".conv1.weight")) ++v.num_res_blocks;
  v.z_channels = (int)shape_of(D + "conv_in.weight", 4, "VAE")[1];
  v.embed_dim = (int)shape_of(std::string(kVaePrefix) + "post_quant_conv.weight", 4, "VAE")[1];
  v.out_channels = (int)shape_of(D + "conv_out.weight", 4, "VAE")[0];

  // The text encoders (CLIPTextModel names under each encoder's prefix).
  for (size_t i = 0; i < config_.text_encoder_count(); ++i) {
    ClipConfig& c = config_.text_encoder(i);
    const std::string T = c.prefix;
    if (count_network(T.c_str()) == 0) fail(path_ + ": no tensors of text encoder " + std::to_string(i) + " (" + T + "*)");
    const Shape& tok = shape_of(T + "embeddings.token_embedding.weight", 2, "text encoder");
    c.vocab_size = (int)tok[0];
    c.width = (int)tok[1];
    c.max_length = (int)shape_of(T + "embeddings.position_embedding.weight", 2, "text encoder")[0];
    c.layers = 0;
    while (exists(T + "encoder.layers." + std::to_string(c.layers) + ".self_attn.q_proj.weight")) ++c.layers;
    c.mlp_dim = (int)shape_of(T + "encoder.layers.0.mlp.fc1.weight", 2, "text encoder")[0];
    if (c.pooled_dim > 0) c.pooled_dim = (int)shape_of(T + "text_projection", 2, "text encoder")[1];
  }
}

// ---- validation against the complete expected layout -----------------------------------------

void Checkpoint::validate() {
  if (!alphas_cumprod_.empty()) validate_alphas_cumprod(alphas_cumprod_, config_.schedule.num_train_timesteps, path_);
  // Values the config supplies that the layout cannot check.
  const UNetConfig& u = config_.unet;
  for (size_t l = 0; l < u.channel_mult.size(); ++l) {
    int ch = u.model_channels * u.channel_mult[l];
    int heads = u.heads_for(ch);
    if (u.attention_levels[l] && (heads <= 0 || ch % heads))
      fail(config_.name + ": UNet level " + std::to_string(l) + " has " + std::to_string(ch) +
           " channels, not divisible into " + std::to_string(heads) + " heads");
  }
  for (const ClipConfig& c : config_.text_encoders()) {
    if (c.skip_last_layers < 0 || c.context_skip < 0 || c.context_layer(1) < 0)
      fail(config_.name + ": text encoder skip_last_layers " + std::to_string(c.skip_last_layers) + " and context_skip " +
           std::to_string(c.context_skip) + " leave no layer of " + std::to_string(c.layers));
    if (c.heads <= 0 || c.width % c.heads)
      fail(config_.name + ": text encoder width " + std::to_string(c.width) + " is not divisible into " +
           std::to_string(c.heads) + " heads");
    if (c.max_length != config_.clip.max_length)
      fail(config_.name + ": the text encoders disagree on the context length (" + std::to_string(c.max_length) +
           " vs " + std::to_string(config_.clip.max_length) + " tokens)");
  }
  if (u.context_dim != config_.context_width())
    fail(config_.name + ": the UNet's cross-attention takes a context " + std::to_string(u.context_dim) +
         " wide, the text encoders give " + std::to_string(config_.context_width()));
  // y = the pooled vectors, then 6 size embeddings (SDXL); a UNet without y takes neither.
  const int y_width = config_.pooled_width() + 6 * config_.size_embed_dim;
  if (u.adm_in_channels != (u.adm_in_channels > 0 || y_width > 0 ? y_width : 0))
    fail(config_.name + ": the UNet's vector input y (label_emb) is " + std::to_string(u.adm_in_channels) +
         " wide; the model's conditioning gives " + std::to_string(config_.pooled_width()) + " pooled + 6 x " +
         std::to_string(config_.size_embed_dim) + " size embedding values");
  // The default image size must be one the model can make: the VAE's and the UNet's
  // downsampling must divide it (as they must divide -W/-H).
  const int size_multiple = config_.vae.downsample_factor() * (1 << (int)(u.channel_mult.size() - 1));
  if (config_.sample_size % size_multiple)
    fail(config_.name + ": sample_size " + std::to_string(config_.sample_size) + " is not a multiple of " +
         std::to_string(size_multiple) + " (the VAE's and UNet's downsampling)");

  // VAE attention projections stored as linears are viewed as 1x1 convs.
  for (auto& [name, e] : tensors_)
    if (is_vae_attention_projection(name) && e.shape.size() == 2) e.shape = {e.shape[0], e.shape[1], 1, 1};

  std::vector<std::string> missing, wrong;
  std::set<std::string> expected;
  for (const TensorSpec& s : sd1_layout(config_)) {
    expected.insert(s.name);
    auto it = tensors_.find(s.name);
    if (it == tensors_.end()) missing.push_back(s.name);
    else if (it->second.shape != s.shape)
      wrong.push_back(s.name + " has shape " + shape_str(it->second.shape) + ", expected " + shape_str(s.shape) +
                      (format_ == CheckpointFormat::Diffusers ? " (" + source(s.name) + ")" : ""));
  }
  std::vector<std::string> unexpected;
  for (auto& [name, e] : tensors_)
    if (!expected.count(name)) unexpected.push_back(name + (format_ == CheckpointFormat::Diffusers ? " (" + source(name) + ")" : ""));
  if (!wrong.empty())
    fail(path_ + ": " + std::to_string(wrong.size()) + " tensor(s) do not fit the inferred " +
         model_family_name(config_.family) + " architecture:" +
         list_some(wrong));
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = path_ + ": the tensors do not match the inferred " + model_family_name(config_.family) + " architecture";
    if (!missing.empty()) msg += "\nmissing " + std::to_string(missing.size()) + ":" + list_some(missing);
    if (!unexpected.empty()) msg += "\nunexpected " + std::to_string(unexpected.size()) + ":" + list_some(unexpected);
    fail(msg);
  }
  for (auto& [name, e] : tensors_)
    if (e.tensor->dtype == StDType::I32 || e.tensor->dtype == StDType::I64)
      fail(source(name) + ": weight stored as integer " + st_dtype_name(e.tensor->dtype));
}

// ---- access ----------------------------------------------------------------------------------

std::vector<std::string> Checkpoint::tensor_names(const std::string& prefix) const {
  std::vector<std::string> r;
  for (auto it = tensors_.lower_bound(prefix); it != tensors_.end() && it->first.starts_with(prefix); ++it)
    r.push_back(it->first);
  return r;
}

const Shape& Checkpoint::shape(const std::string& name) const { return entry(name).shape; }
StDType Checkpoint::dtype(const std::string& name) const { return entry(name).tensor->dtype; }
std::string Checkpoint::source(const std::string& name) const {
  const Entry& e = entry(name);
  std::string s = e.file->path() + ": " + e.tensor->name;
  if (e.shape.size() == e.tensor->shape.size() && !e.shape.empty() && e.shape[0] != e.tensor->shape[0])
    s += " rows " + std::to_string(e.row0) + ".." + std::to_string(e.row0 + e.shape[0] - 1);
  return s;
}
std::vector<float> Checkpoint::read_f32(const std::string& name) const {
  const Entry& e = entry(name);
  std::vector<float> all = e.file->to_f32(*e.tensor);
  const size_t n = (size_t)shape_numel(e.shape);
  if (e.transpose) {
    const size_t rows = (size_t)e.shape[0], cols = (size_t)e.shape[1];
    std::vector<float> t(n);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) t[r * cols + c] = all[c * rows + r];
    return t;
  }
  if (n == all.size()) return all;
  // A slice along the first dimension (fused q/k/v): contiguous rows.
  const size_t row = e.tensor->shape.empty() || e.tensor->shape[0] == 0 ? 0 : all.size() / (size_t)e.tensor->shape[0];
  const size_t begin = (size_t)e.row0 * row;
  if (begin + n > all.size()) fail(source(name) + ": slice outside the stored tensor");
  return std::vector<float>(all.begin() + (ptrdiff_t)begin, all.begin() + (ptrdiff_t)(begin + n));
}

std::vector<uint8_t> Checkpoint::read_as(const std::string& name, DType storage) const {
  if (storage != DType::F16 && storage != DType::F32) fail(source(name) + ": weights are stored as f16 or f32");
  const Entry& e = entry(name);
  const size_t n = (size_t)shape_numel(e.shape);
  const size_t in_size = st_dtype_size(e.tensor->dtype), out_size = dtype_size(storage);
  // A slice along the first dimension (fused q/k/v) is contiguous rows of the stored tensor.
  const uint64_t stored = e.tensor->end - e.tensor->begin;
  const uint64_t row_bytes = e.tensor->shape.empty() || e.tensor->shape[0] == 0 ? 0 : stored / (uint64_t)e.tensor->shape[0];
  const uint64_t begin = (uint64_t)e.row0 * row_bytes;
  const bool same = (e.tensor->dtype == StDType::F16 && storage == DType::F16) ||
                    (e.tensor->dtype == StDType::F32 && storage == DType::F32);
  std::vector<uint8_t> raw(n * in_size);
  e.file->read_range(*e.tensor, begin, raw.size(), raw.data());
  if (same) return raw;
  // Widen to f32 exactly (F16, BF16, F32), then store: f32 as is, f16 rounded to nearest even.
  std::vector<uint8_t> out(n * out_size);
  for (size_t i = 0; i < n; ++i) {
    float f;
    if (e.tensor->dtype == StDType::F32) {
      std::memcpy(&f, &raw[i * 4], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &raw[i * 2], 2);
      f = e.tensor->dtype == StDType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    if (storage == DType::F32) {
      std::memcpy(&out[i * 4], &f, 4);
    } else {
      const uint16_t h = f32_to_f16(f);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}

void Checkpoint::set_prediction_type(const std::string& prediction, const std::string& what) {
  std::string p = prediction;
  if (p == "eps") p = "epsilon";
  if (p == "v") p = "v_prediction";
  if (p != "epsilon" && p != "v_prediction")
    fail(what + ": prediction type '" + prediction + "' is not supported (eps or v)");
  config_.schedule.prediction_type = p;
  config_sources_.push_back(what);
}

// ---- vksd model config JSON ------------------------------------------------------------------

namespace {

struct ConfigReader {
  const Json& obj;
  std::string section, what;
  std::vector<std::string>* ignored;
  std::set<std::string> known;

  std::string key_name(const char* k) const { return section.empty() ? k : section + "." + k; }
  const Json* get(const char* k) {
    known.insert(k);
    const Json* v = obj.find(k);
    return v && !v->is_null() ? v : nullptr;
  }
  template <class T>
  void check(const char* k, const T& have) {  // shape-derived: must agree
    if (const Json* v = get(k)) {
      T want = parse<T>(*v, k);
      if (want != have) fail(what + ": " + key_name(k) + " = " + str(want) + " but the tensors say " + str(have));
    }
  }
  template <class T>
  void take(const char* k, T& dst) {
    if (const Json* v = get(k)) dst = parse<T>(*v, k);
  }
  void finish() {
    for (const auto& [k, v] : obj.as_object())
      if (!known.count(k) && ignored) ignored->push_back(what + ": " + key_name(k.c_str()));
  }
  // The object under key k, when present, read by its own reader: read(r) takes and checks its
  // keys, then the keys it did not know are reported as ignored.
  template <class Read>
  void sub(const char* k, Read read) {
    if (const Json* s = get(k)) {
      if (!s->is_object()) fail(what + ": " + key_name(k) + " must be an object");
      ConfigReader r{*s, key_name(k), what, ignored, {}};
      read(r);
      r.finish();
    }
  }

  template <class T>
  T parse(const Json& v, const char* k) {
    std::string n = what + ": " + key_name(k);
    try {
      if constexpr (std::is_same_v<T, int>) return (int)v.as_int(n.c_str());
      else if constexpr (std::is_same_v<T, float>) return (float)v.as_number(n.c_str());
      else if constexpr (std::is_same_v<T, double>) return v.as_number(n.c_str());
      else if constexpr (std::is_same_v<T, bool>) return v.as_bool(n.c_str());
      else if constexpr (std::is_same_v<T, std::string>) return v.as_string(n.c_str());
      else if constexpr (std::is_same_v<T, std::vector<int>>) {
        std::vector<int> r;
        for (const Json& e : v.as_array(n.c_str())) r.push_back((int)e.as_int(n.c_str()));
        return r;
      } else {
        std::vector<bool> r;
        for (const Json& e : v.as_array(n.c_str())) r.push_back(e.as_bool(n.c_str()));
        return r;
      }
    } catch (const Error& e) {
      fail(std::string(e.what()));
    }
  }
  template <class T>
  static std::string str(const T& v) {
    std::ostringstream o;
    if constexpr (std::is_same_v<T, std::vector<int>> || std::is_same_v<T, std::vector<bool>>) {
      o << "[";
      for (size_t i = 0; i < v.size(); ++i) o << (i ? "," : "") << (std::is_same_v<T, std::vector<bool>> ? (v[i] ? "true" : "false") : std::to_string((int)v[i]));
      o << "]";
    } else if constexpr (std::is_same_v<T, bool>) {
      o << (v ? "true" : "false");
    } else {
      o << v;
    }
    return o.str();
  }
};

}  // namespace

void apply_model_config_json(ModelConfig& cfg, const Json& j, const std::string& what, std::vector<std::string>* ignored,
                             const std::string& base_dir) {
  if (!j.is_object()) fail(what + ": a model config must be a JSON object");
  ConfigReader top{j, "", what, ignored, {}};
  top.take("name", cfg.name);
  top.take("scale_factor", cfg.vae.scale_factor);
  top.take("sample_size", cfg.sample_size);
  if (cfg.sample_size <= 0 || cfg.sample_size % 8)
    fail(what + ": sample_size must be a positive multiple of 8 pixels (got " + std::to_string(cfg.sample_size) + ")");

  // The vocabulary is checked here rather than when the tokenizer loads: a config naming a
  // missing file is a broken model folder, and the message should say which config and key named it.
  top.sub("tokenizer", [&](ConfigReader& r) {
    std::string vocab;
    r.take("vocab", vocab);
    if (!r.get("vocab")) return;
    if (vocab.empty()) fail(what + ": tokenizer.vocab is empty");
    fs::path p(vocab);
    if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      fail(what + ": tokenizer.vocab names '" + vocab + "', which does not exist (" + p.string() + ")");
    cfg.tokenizer_vocab = p.lexically_normal().string();
  });
  top.sub("unet", [&](ConfigReader& r) {
    UNetConfig& u = cfg.unet;
    r.check("in_channels", u.in_channels);
    r.check("out_channels", u.out_channels);
    r.check("model_channels", u.model_channels);
    r.check("channel_mult", u.channel_mult);
    r.check("num_res_blocks", u.num_res_blocks);
    r.check("attention_levels", u.attention_levels);
    // The reference writes transformer_depth as one number (SD 1.x / 2.x) or one entry per level
    // (SDXL's [0, 2, 10]); a level without attention ignores its entry, as the reference does.
    if (const Json* v = r.get("transformer_depth"); v && v->is_array()) {
      const auto want = r.parse<std::vector<int>>(*v, "transformer_depth");
      if (want.size() != u.channel_mult.size())
        fail(what + ": unet.transformer_depth has " + std::to_string(want.size()) + " entries for " +
             std::to_string(u.channel_mult.size()) + " levels");
      for (size_t l = 0; l < want.size(); ++l)
        if (u.attention_levels[l] && want[l] != u.depth_at((int)l))
          fail(what + ": unet.transformer_depth[" + std::to_string(l) + "] = " + std::to_string(want[l]) +
               " but the tensors say " + std::to_string(u.depth_at((int)l)));
    } else {
      r.check("transformer_depth", u.transformer_depth);
    }
    r.check("context_dim", u.context_dim);
    r.check("use_linear_in_transformer", u.use_linear_in_transformer);
    // A head count alone means a fixed count (SD 1.x style), whatever the family's default.
    r.take("num_heads", u.num_heads);
    if (r.get("num_heads") && !r.get("num_head_channels")) u.num_head_channels = -1;
    r.take("num_head_channels", u.num_head_channels);
    r.take("gn_eps", u.gn_eps);
    r.take("ln_eps", u.ln_eps);
    if (u.num_head_channels <= 0 && u.num_heads <= 0) fail(what + ": unet.num_heads must be positive");
  });
  // "text_encoder" is the first encoder, "text_encoder_2" the second (SDXL's bigG).
  auto text_encoder = [&](ConfigReader& r, ClipConfig& c) {
    r.check("vocab_size", c.vocab_size);
    r.check("max_length", c.max_length);
    r.check("width", c.width);
    r.check("layers", c.layers);
    r.check("mlp_dim", c.mlp_dim);
    r.take("heads", c.heads);
    r.take("ln_eps", c.ln_eps);
    r.take("quick_gelu", c.quick_gelu);
    r.take("bos_token", c.bos_token);
    r.take("eos_token", c.eos_token);
    r.take("pad_token", c.pad_token);
    r.take("skip_last_layers", c.skip_last_layers);
  };
  top.sub("text_encoder", [&](ConfigReader& r) { text_encoder(r, cfg.clip); });
  top.sub("text_encoder_2", [&](ConfigReader& r) {
    if (cfg.more_text_encoders.empty()) fail(what + ": text_encoder_2 given for a model with one text encoder");
    text_encoder(r, cfg.more_text_encoders[0]);
  });
  top.sub("vae", [&](ConfigReader& r) {
    VaeConfig& v = cfg.vae;
    r.check("in_channels", v.in_channels);
    r.check("out_channels", v.out_channels);
    r.check("ch", v.ch);
    r.check("ch_mult", v.ch_mult);
    r.check("num_res_blocks", v.num_res_blocks);
    r.check("z_channels", v.z_channels);
    r.check("embed_dim", v.embed_dim);
    r.take("gn_eps", v.gn_eps);
    r.take("scale_factor", v.scale_factor);
    r.take("fp32_activations", v.fp32_activations);
  });
  top.sub("schedule", [&](ConfigReader& r) {
    ScheduleConfig& sc = cfg.schedule;
    r.take("num_train_timesteps", sc.num_train_timesteps);
    r.take("beta_start", sc.beta_start);
    r.take("beta_end", sc.beta_end);
    r.take("beta_schedule", sc.beta_schedule);
    r.take("prediction_type", sc.prediction_type);
    r.take("timestep_spacing", sc.timestep_spacing);
    r.take("steps_offset", sc.steps_offset);
    r.take("init_noise", sc.init_noise);
  });
  // "preview": {"latent_rgb": [[r, g, b], ... one row per latent channel], "bias": [r, g, b]}
  top.sub("preview", [&](ConfigReader& r) {
    const int channels = cfg.vae.embed_dim;
    const std::string key = r.key_name("latent_rgb");
    auto number = [&](const Json& v, const std::string& k) {
      if (!v.is_number()) fail(what + ": " + k + " must hold numbers");
      const double d = v.as_number();
      if (!std::isfinite(d)) fail(what + ": " + k + " holds a value that is not finite");
      return (float)d;
    };
    const Json* rows = r.get("latent_rgb");
    if (!rows) fail(what + ": " + key + " is missing (one [r, g, b] row per latent channel)");
    const std::string shape = " must be " + std::to_string(channels) + " rows of [r, g, b], one per latent channel";
    if (!rows->is_array()) fail(what + ": " + key + shape);
    if ((int)rows->as_array().size() != channels)
      fail(what + ": " + key + shape + " (the VAE has " + std::to_string(channels) + " latent channels), got " +
           std::to_string(rows->as_array().size()) + " rows");
    if (channels > LatentPreview::kMaxChannels)
      fail(what + ": " + key + ": previews support at most " + std::to_string(LatentPreview::kMaxChannels) +
           " latent channels, the VAE has " + std::to_string(channels));
    LatentRgbMap m;
    m.channels = channels;
    for (const Json& row : rows->as_array()) {
      if (!row.is_array() || row.as_array().size() != 3) fail(what + ": " + key + shape + "; a row is not [r, g, b]");
      for (const Json& v : row.as_array()) m.weights.push_back(number(v, key));
    }
    if (const Json* b = r.get("bias")) {
      if (!b->is_array() || b->as_array().size() != 3) fail(what + ": " + r.key_name("bias") + " must be [r, g, b]");
      for (int c = 0; c < 3; ++c) m.bias[c] = number(b->as_array()[(size_t)c], r.key_name("bias"));
    }
    cfg.preview = m;
  });
  top.finish();

  const ScheduleConfig& sc = cfg.schedule;
  if (sc.beta_schedule != "scaled_linear" && sc.beta_schedule != "linear")
    fail(what + ": schedule.beta_schedule '" + sc.beta_schedule + "' is not supported (scaled_linear or linear)");
  if (sc.prediction_type != "epsilon" && sc.prediction_type != "v_prediction")
    fail(what + ": schedule.prediction_type '" + sc.prediction_type + "' is not supported (epsilon or v_prediction)");
  if (!sc.timestep_spacing.empty() && sc.timestep_spacing != "leading" && sc.timestep_spacing != "trailing" &&
      sc.timestep_spacing != "linspace")
    fail(what + ": schedule.timestep_spacing '" + sc.timestep_spacing + "' is not supported (leading, trailing or linspace)");
  if (sc.init_noise != "sigma" && sc.init_noise != "sqrt_sigma2_plus_1")
    fail(what + ": schedule.init_noise '" + sc.init_noise + "' is not supported (sigma or sqrt_sigma2_plus_1)");
  if (sc.steps_offset < 0 || sc.steps_offset >= sc.num_train_timesteps)
    fail(what + ": schedule.steps_offset must be in [0, num_train_timesteps)");
  if (sc.num_train_timesteps <= 0 || !(sc.beta_start > 0) || !(sc.beta_end >= sc.beta_start) || sc.beta_end >= 1)
    fail(what + ": schedule needs num_train_timesteps > 0 and 0 < beta_start <= beta_end < 1");
  for (const ClipConfig& c : cfg.text_encoders())
    if (c.heads <= 0) fail(what + ": text_encoder.heads must be positive");
}

// ---- upload ----------------------------------------------------------------------------------

std::unique_ptr<WeightStore> load_weights(Context& ctx, const Checkpoint& ckpt, const std::string& prefix, DType storage,
                                          const WeightPatch& patch) {
  return load_weights(ctx, ckpt, std::vector<std::string>{prefix}, storage, patch);
}

std::unique_ptr<WeightStore> load_weights(Context& ctx, const Checkpoint& ckpt, const std::vector<std::string>& prefixes,
                                          DType storage, const WeightPatch& patch) {
  std::vector<std::string> names;
  for (const std::string& prefix : prefixes) {
    const std::vector<std::string> part = ckpt.tensor_names(prefix);
    if (part.empty()) fail(ckpt.path() + ": no network tensors start with '" + prefix + "'");
    names.insert(names.end(), part.begin(), part.end());
  }
  // Each tensor is placed at the next kTensorAlignment boundary (Arena::alloc).
  VkDeviceSize total = 0;
  for (const auto& n : names)
    total += align_up(align_up((VkDeviceSize)shape_numel(ckpt.shape(n)) * dtype_size(storage), 16), kTensorAlignment);
  auto ws = std::make_unique<WeightStore>(ctx, storage, total);
  // One batch for the whole network (declared after ws: it waits for its copies before the
  // weights' buffers could be freed by an exception).
  UploadBatch batch(ctx);
  ctx.staging().expect_batch(total);  // slots sized to the network: a small one stays small
  std::vector<float> buf;
  for (const auto& n : names) {
    if (patch) {  // LoRA merges in f32 on the host
      buf = ckpt.read_f32(n);
      patch(n, ckpt.shape(n), buf);
      ws->add(n, ckpt.shape(n), buf.data(), &batch);
    } else {
      ws->add_bytes(n, ckpt.shape(n), ckpt.read_as(n, storage).data(), batch);
    }
  }
  batch.finish();
  return ws;
}

}  // namespace vksd
