#include "runtime/model/diffusers.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/model/sd1_layout.h"

namespace vksd {

namespace {

// A key split at dots, consumed front to back.
struct Key {
  std::vector<std::string> parts;
  size_t i = 0;
  explicit Key(const std::string& k) {
    size_t s = 0;
    while (true) {
      size_t d = k.find('.', s);
      parts.push_back(k.substr(s, d == std::string::npos ? std::string::npos : d - s));
      if (d == std::string::npos) break;
      s = d + 1;
    }
  }
  bool eat(const std::string& w) {
    if (i < parts.size() && parts[i] == w) {
      ++i;
      return true;
    }
    return false;
  }
  // A decimal index; -1 when the next part is not one.
  int index() {
    if (i >= parts.size() || parts[i].empty() || parts[i].size() > 6) return -1;
    for (char c : parts[i])
      if (c < '0' || c > '9') return -1;
    return std::stoi(parts[i++]);
  }
  std::string rest() const {
    std::string r;
    for (size_t k = i; k < parts.size(); ++k) r += (k > i ? "." : "") + parts[k];
    return r;
  }
  size_t left() const { return parts.size() - i; }
};

// "weight" / "bias" (the only leaves of the renamed modules).
bool is_param(const Key& k) { return k.left() == 1 && (k.parts[k.i] == "weight" || k.parts[k.i] == "bias"); }

// UNet ResnetBlock2D -> openaimodel.ResBlock.
std::string unet_resnet(Key& k) {
  static const std::pair<const char*, const char*> m[] = {
      {"norm1", "in_layers.0"},  {"conv1", "in_layers.2"},  {"time_emb_proj", "emb_layers.1"},
      {"norm2", "out_layers.0"}, {"conv2", "out_layers.3"}, {"conv_shortcut", "skip_connection"}};
  for (auto [d, o] : m)
    if (k.eat(d)) return is_param(k) ? std::string(o) + "." + k.rest() : "";
  return "";
}

// VAE ResnetBlock2D -> model.ResnetBlock.
std::string vae_resnet(Key& k) {
  static const std::pair<const char*, const char*> m[] = {
      {"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"conv_shortcut", "nin_shortcut"}};
  for (auto [d, o] : m)
    if (k.eat(d)) return is_param(k) ? std::string(o) + "." + k.rest() : "";
  return "";
}

// VAE mid-block Attention (old names query/key/value/proj_attn, new to_q/to_k/to_v/to_out.0).
std::string vae_attention(Key& k) {
  static const std::pair<const char*, const char*> m[] = {
      {"group_norm", "norm"}, {"query", "q"}, {"to_q", "q"}, {"key", "k"},          {"to_k", "k"},
      {"value", "v"},         {"to_v", "v"},  {"proj_attn", "proj_out"}};
  for (auto [d, o] : m)
    if (k.eat(d)) return is_param(k) ? std::string(o) + "." + k.rest() : "";
  if (k.eat("to_out") && k.eat("0") && is_param(k)) return "proj_out." + k.rest();
  return "";
}

std::string unet_key(Key& k, const DiffusersUNetShape& s) {
  const int n = s.layers_per_block;
  if (k.eat("conv_in")) return is_param(k) ? "input_blocks.0.0." + k.rest() : "";
  if (k.eat("conv_norm_out")) return is_param(k) ? "out.0." + k.rest() : "";
  if (k.eat("conv_out")) return is_param(k) ? "out.2." + k.rest() : "";
  // SDXL's vector input: UNet2DConditionModel's add_embedding (TimestepEmbedding on y) is
  // openaimodel's label_emb = Sequential(Sequential(Linear, SiLU, Linear)).
  if (k.eat("add_embedding")) {
    if (k.eat("linear_1")) return is_param(k) ? "label_emb.0.0." + k.rest() : "";
    if (k.eat("linear_2")) return is_param(k) ? "label_emb.0.2." + k.rest() : "";
    return "";
  }
  if (k.eat("time_embedding")) {
    if (k.eat("linear_1")) return is_param(k) ? "time_embed.0." + k.rest() : "";
    if (k.eat("linear_2")) return is_param(k) ? "time_embed.2." + k.rest() : "";
    return "";
  }
  if (k.eat("down_blocks")) {
    int i = k.index();
    if (i < 0 || i >= s.levels) return "";
    if (k.eat("resnets")) {
      int j = k.index();
      if (j < 0 || j >= n) return "";
      std::string r = unet_resnet(k);
      return r.empty() ? "" : "input_blocks." + std::to_string(1 + i * (n + 1) + j) + ".0." + r;
    }
    if (k.eat("attentions")) {
      int j = k.index();
      if (j < 0 || j >= n || k.left() == 0) return "";
      return "input_blocks." + std::to_string(1 + i * (n + 1) + j) + ".1." + k.rest();
    }
    if (k.eat("downsamplers") && k.eat("0") && k.eat("conv") && is_param(k))
      return "input_blocks." + std::to_string((i + 1) * (n + 1)) + ".0.op." + k.rest();
    return "";
  }
  if (k.eat("mid_block")) {
    if (k.eat("resnets")) {
      int j = k.index();
      if (j != 0 && j != 1) return "";
      std::string r = unet_resnet(k);
      return r.empty() ? "" : "middle_block." + std::to_string(2 * j) + "." + r;
    }
    if (k.eat("attentions") && k.eat("0") && k.left() > 0) return "middle_block.1." + k.rest();
    return "";
  }
  if (k.eat("up_blocks")) {
    int i = k.index();
    if (i < 0 || i >= s.levels) return "";
    const bool attention = s.attention[s.levels - 1 - i];  // up block i is down level L-1-i
    if (k.eat("resnets")) {
      int j = k.index();
      if (j < 0 || j > n) return "";
      std::string r = unet_resnet(k);
      return r.empty() ? "" : "output_blocks." + std::to_string(i * (n + 1) + j) + ".0." + r;
    }
    if (k.eat("attentions")) {
      int j = k.index();
      if (j < 0 || j > n || k.left() == 0) return "";
      return "output_blocks." + std::to_string(i * (n + 1) + j) + ".1." + k.rest();
    }
    if (k.eat("upsamplers") && k.eat("0") && k.eat("conv") && is_param(k))
      return "output_blocks." + std::to_string(i * (n + 1) + n) + (attention ? ".2" : ".1") + ".conv." + k.rest();
    return "";
  }
  return "";
}

std::string vae_key(Key& k, int levels) {
  if (k.eat("quant_conv")) return is_param(k) ? "quant_conv." + k.rest() : "";
  if (k.eat("post_quant_conv")) return is_param(k) ? "post_quant_conv." + k.rest() : "";
  std::string side;
  if (k.eat("encoder")) side = "encoder.";
  else if (k.eat("decoder")) side = "decoder.";
  else return "";
  if (k.eat("conv_in")) return is_param(k) ? side + "conv_in." + k.rest() : "";
  if (k.eat("conv_out")) return is_param(k) ? side + "conv_out." + k.rest() : "";
  if (k.eat("conv_norm_out")) return is_param(k) ? side + "norm_out." + k.rest() : "";
  if (k.eat("mid_block")) {
    if (k.eat("resnets")) {
      int j = k.index();
      if (j != 0 && j != 1) return "";
      std::string r = vae_resnet(k);
      return r.empty() ? "" : side + "mid.block_" + std::to_string(j + 1) + "." + r;
    }
    if (k.eat("attentions") && k.eat("0")) {
      std::string r = vae_attention(k);
      return r.empty() ? "" : side + "mid.attn_1." + r;
    }
    return "";
  }
  if (side == "encoder." && k.eat("down_blocks")) {
    int i = k.index();
    if (i < 0 || i >= levels) return "";
    std::string d = side + "down." + std::to_string(i) + ".";
    if (k.eat("resnets")) {
      int j = k.index();
      std::string r = j < 0 ? "" : vae_resnet(k);
      return r.empty() ? "" : d + "block." + std::to_string(j) + "." + r;
    }
    if (k.eat("downsamplers") && k.eat("0") && k.eat("conv") && is_param(k)) return d + "downsample.conv." + k.rest();
    return "";
  }
  if (side == "decoder." && k.eat("up_blocks")) {
    int i = k.index();
    if (i < 0 || i >= levels) return "";
    // diffusers lists decoder levels in processing order (deepest first); LDM indexes them by
    // resolution level, so up_blocks.i is up.(L-1-i).
    std::string u = side + "up." + std::to_string(levels - 1 - i) + ".";
    if (k.eat("resnets")) {
      int j = k.index();
      std::string r = j < 0 ? "" : vae_resnet(k);
      return r.empty() ? "" : u + "block." + std::to_string(j) + "." + r;
    }
    if (k.eat("upsamplers") && k.eat("0") && k.eat("conv") && is_param(k)) return u + "upsample.conv." + k.rest();
    return "";
  }
  return "";
}

}  // namespace

DiffusersUNetShape diffusers_unet_shape(const std::vector<std::string>& keys) {
  DiffusersUNetShape s;
  std::vector<int> resnets_per_level;
  std::vector<bool> attention;
  for (const auto& name : keys) {
    Key k(name);
    if (!k.eat("down_blocks")) continue;
    int i = k.index();
    if (i < 0) continue;
    if ((int)resnets_per_level.size() <= i) {
      resnets_per_level.resize(i + 1, 0);
      attention.resize(i + 1, false);
    }
    if (k.eat("resnets")) {
      int j = k.index();
      resnets_per_level[i] = std::max(resnets_per_level[i], j + 1);
    } else if (k.eat("attentions")) {
      attention[i] = true;
    }
  }
  if (resnets_per_level.empty()) fail("diffusers UNet: no down_blocks.* tensors");
  s.levels = (int)resnets_per_level.size();
  s.layers_per_block = resnets_per_level[0];
  s.attention = attention;
  return s;
}

std::string diffusers_unet_key(const std::string& key, const DiffusersUNetShape& s) {
  Key k(key);
  std::string r = unet_key(k, s);
  return r.empty() ? "" : kUNetPrefix + r;
}

std::string diffusers_vae_key(const std::string& key, int levels) {
  Key k(key);
  std::string r = vae_key(k, levels);
  return r.empty() ? "" : kVaePrefix + r;
}

std::string diffusers_clip_key(const std::string& key) {
  const std::string p = "text_model.";
  if (key.compare(0, p.size(), p) != 0 || key.size() == p.size()) return "";
  return kClipPrefix + key.substr(p.size());
}

// ---- config.json files ----------------------------------------------------------------------

namespace {

void check_int(const Json& j, const char* key, int64_t inferred, const std::string& what) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) return;
  int64_t c = v->as_int(key);
  if (c != inferred)
    fail(what + ": " + key + " = " + std::to_string(c) + " but the tensors say " + std::to_string(inferred));
}

void check_ints(const Json& j, const char* key, const std::vector<int64_t>& inferred, const std::string& what) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) return;
  std::vector<int64_t> c;
  for (const Json& e : v->as_array(key)) c.push_back(e.as_int(key));
  if (c != inferred) {
    auto str = [](const std::vector<int64_t>& x) { return shape_str(Shape(x.begin(), x.end())); };
    fail(what + ": " + key + " = " + str(c) + " but the tensors say " + str(inferred));
  }
}

// The block layout keys that diffusers' UNet2DConditionModel and AutoencoderKL configs share;
// returns the per-level widths (base channels times each multiplier).
std::vector<int64_t> check_blocks(const Json& j, int base, const std::vector<int>& mult, int in_channels,
                                  int out_channels, int num_res_blocks, const std::string& what) {
  std::vector<int64_t> widths;
  for (int m : mult) widths.push_back((int64_t)base * m);
  check_ints(j, "block_out_channels", widths, what);
  check_int(j, "in_channels", in_channels, what);
  check_int(j, "out_channels", out_channels, what);
  check_int(j, "layers_per_block", num_res_blocks, what);
  return widths;
}

}  // namespace

void apply_diffusers_config(ModelConfig& cfg, const std::string& component, const Json& j, const std::string& what) {
  if (!j.is_object()) fail(what + ": not a JSON object");
  if (component == "unet") {
    UNetConfig& u = cfg.unet;
    const std::vector<int64_t> widths =
        check_blocks(j, u.model_channels, u.channel_mult, u.in_channels, u.out_channels, u.num_res_blocks, what);
    check_int(j, "cross_attention_dim", u.context_dim, what);
    if (const Json* v = j.find("use_linear_projection"); v && !v->is_null())
      if (v->as_bool("use_linear_projection") != u.use_linear_in_transformer)
        fail(what + ": use_linear_projection disagrees with the proj_in tensors' shape");
    // SD 1.x configs call the head COUNT "attention_head_dim" (a historical misnomer that
    // diffusers keeps for compatibility); num_attention_heads, when set, means the same.
    const Json* heads = j.find("num_attention_heads");
    if (!heads || heads->is_null()) heads = j.find("attention_head_dim");
    if (heads && !heads->is_null()) {
      if (heads->is_number()) {
        u.num_heads = (int)heads->as_int("attention_head_dim");
        u.num_head_channels = -1;
      } else {
        // Per level head counts (SD 2.x style): a constant head width becomes num_head_channels.
        const auto& a = heads->as_array("attention_head_dim");
        if (a.size() != widths.size()) fail(what + ": attention_head_dim has " + std::to_string(a.size()) + " entries for " + std::to_string(widths.size()) + " levels");
        int64_t dim = -1;
        bool same_count = true;
        for (size_t l = 0; l < a.size(); ++l) {
          int64_t h = a[l].as_int("attention_head_dim");
          if (h <= 0 || widths[l] % h) fail(what + ": attention_head_dim entry " + std::to_string(h) + " does not divide " + std::to_string(widths[l]) + " channels");
          if (dim < 0) dim = widths[l] / h;
          else if (dim != widths[l] / h) dim = 0;
          if (h != a[0].as_int()) same_count = false;
        }
        if (same_count) {
          u.num_heads = (int)a[0].as_int();
          u.num_head_channels = -1;
        } else if (dim > 0) {
          u.num_head_channels = (int)dim;
        } else {
          fail(what + ": attention_head_dim per level is neither a constant head count nor a constant head width");
        }
      }
    }
    u.gn_eps = (float)j.number_or("norm_eps", u.gn_eps);
    check_int(j, "norm_num_groups", 32, what);
    // The latent size the UNet was trained at (64 for SD 1.x / 2.x-base, 96 for 2.x-768-v).
    if (const Json* v = j.find("sample_size"); v && v->is_number())
      cfg.sample_size = (int)v->as_int("sample_size") * cfg.vae.downsample_factor();
  } else if (component == "vae") {
    VaeConfig& v = cfg.vae;
    check_blocks(j, v.ch, v.ch_mult, v.in_channels, v.out_channels, v.num_res_blocks, what);
    check_int(j, "latent_channels", v.embed_dim, what);
    check_int(j, "norm_num_groups", 32, what);
    v.scale_factor = (float)j.number_or("scaling_factor", v.scale_factor);
  } else if (component == "text_encoder" || component == "text_encoder_2") {
    if (component == "text_encoder_2" && cfg.more_text_encoders.empty())
      fail(what + ": a text_encoder_2 config for a model with one text encoder");
    ClipConfig& c = component == "text_encoder" ? cfg.clip : cfg.more_text_encoders[0];
    check_int(j, "hidden_size", c.width, what);
    check_int(j, "intermediate_size", c.mlp_dim, what);
    check_int(j, "num_hidden_layers", c.layers, what);
    check_int(j, "max_position_embeddings", c.max_length, what);
    check_int(j, "vocab_size", c.vocab_size, what);
    c.heads = (int)j.int_or("num_attention_heads", c.heads);
    c.ln_eps = (float)j.number_or("layer_norm_eps", c.ln_eps);
    std::string act = j.string_or("hidden_act", c.quick_gelu ? "quick_gelu" : "gelu");
    if (act == "quick_gelu") c.quick_gelu = true;
    else if (act == "gelu") c.quick_gelu = false;
    else fail(what + ": hidden_act '" + act + "' is not supported (quick_gelu or gelu)");
    // bos/eos/pad_token_id are NOT taken: SD 1.x text encoder configs carry placeholder values
    // (0, 2, 1) while the tokenizer really uses 49406/49407 and pads with 49407 (SD 2.x: 0, the
    // family default).
  } else if (component == "scheduler") {
    ScheduleConfig& s = cfg.schedule;
    s.num_train_timesteps = (int)j.int_or("num_train_timesteps", s.num_train_timesteps);
    s.beta_start = j.number_or("beta_start", s.beta_start);
    s.beta_end = j.number_or("beta_end", s.beta_end);
    s.beta_schedule = j.string_or("beta_schedule", s.beta_schedule);
    s.prediction_type = j.string_or("prediction_type", s.prediction_type);
    s.timestep_spacing = j.string_or("timestep_spacing", s.timestep_spacing);
    s.steps_offset = (int)j.int_or("steps_offset", s.steps_offset);
    if (j.find("trained_betas") && !j.find("trained_betas")->is_null())
      fail(what + ": trained_betas schedules are not supported");
  } else {
    fail("apply_diffusers_config: unknown component '" + component + "'");
  }
}

}  // namespace vksd
