// `vksd info MODEL [--config FILE]`: what a checkpoint is — its format, the architecture read
// off its tensors (every ModelConfig field), parameter counts, stored dtypes, and the device
// memory its weights need. Needs no GPU.
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <iterator>
#include <vector>

#include "cli/command.h"
#include "cli/lora_info.h"
#include "cli/memory_info.h"
#include "cli/run_report.h"
#include "runtime/model/demo_model.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/model_family.h"
#include "runtime/gpu/memory.h"
#include "runtime/model/sd1_layout.h"

namespace {

using namespace vksd;

std::string ints(const std::vector<int>& v) {
  std::string r = "[";
  for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
  return r + "]";
}
std::string bools(const std::vector<bool>& v) {
  std::string r = "[";
  for (size_t i = 0; i < v.size(); ++i) r += std::string(i ? ", " : "") + (v[i] ? "true" : "false");
  return r + "]";
}
double mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

// Bytes the WeightStore arena takes for these tensors in `dt` (each tensor aligned as the arena does).
uint64_t device_bytes(const std::vector<TensorSpec>& specs, DType dt) {
  uint64_t n = 0;
  for (const auto& s : specs) n += align_up((VkDeviceSize)shape_numel(s.shape) * dtype_size(dt), kTensorAlignment);
  return n;
}

int usage(FILE* f) {
  std::fprintf(f,
               "usage: vksd info [MODEL] [--config FILE] [--prediction eps|v]\n"
               "  MODEL   an SD 1.x / 2.x .safetensors file (original layout), a diffusers folder or a\n"
               "          folder holding model.safetensors (default: $VKSD_MODEL, else the demo model),\n"
               "          or a LoRA .safetensors file (its format, rank, alpha and layers)\n"
               "  --config FILE   vksd model config JSON (docs/model-config.md); default: MODEL's\n"
               "                  <name>.vksd.json or <name>.json beside a single file, vksd.json in a folder\n");
  return f == stdout ? 0 : 1;
}

int cmd_info(int argc, char** argv) {
  std::string model, config, prediction;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return usage(stdout);
    if (!std::strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "vksd info: --config needs a file\n");
        return 1;
      }
      config = argv[++i];
    } else if (!std::strcmp(argv[i], "--prediction")) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "vksd info: --prediction needs eps or v\n");
        return 1;
      }
      prediction = argv[++i];
    } else if (argv[i][0] == '-') {
      std::fprintf(stderr, "vksd info: unknown option '%s'\n", argv[i]);
      return usage(stderr);
    } else if (model.empty()) {
      model = argv[i];
    } else {
      std::fprintf(stderr, "vksd info: more than one MODEL given\n");
      return usage(stderr);
    }
  }
  // No MODEL: the one generate would use (VKSD_MODEL, else the demo model); a folder holding
  // model.safetensors (weights/demo) means that file.
  if (model.empty()) model = vksd::default_model_path();
  else if (std::string inner = vksd::model_in_folder(model); !inner.empty()) model = inner;
  if (vksd::cli::print_lora_info(model)) return 0;

  Checkpoint ck = Checkpoint::open(model, config);
  if (!prediction.empty()) ck.set_prediction_type(prediction, "--prediction " + prediction);
  const ModelConfig& c = ck.config();
  std::printf("model      %s\n", c.name.c_str());
  std::printf("family     %s\n", model_family_name(c.family));
  std::printf("path       %s\n", ck.path().c_str());
  std::printf("format     %s\n", checkpoint_format_name(ck.format()));
  std::printf("config     ");
  for (size_t i = 0; i < ck.config_sources().size(); ++i)
    std::printf("%s%s", i ? " <- " : "", ck.config_sources()[i].c_str());
  std::printf("\n");
  std::printf("sample     %dx%d (default image size)\n", c.sample_size, c.sample_size);
  std::printf("vocabulary %s\n", c.tokenizer_vocab.empty() ? "(not named by the config: searched beside the model, then $VKSD_VOCAB)"
                                                           : c.tokenizer_vocab.c_str());

  const UNetConfig& u = c.unet;
  std::printf("\nUNet (%s)%s\n", kUNetPrefix, u.in_channels == 9 ? "  [inpainting: 9 input channels]" : "");
  std::printf("  in_channels %d, out_channels %d, model_channels %d, channel_mult %s, num_res_blocks %d\n",
              u.in_channels, u.out_channels, u.model_channels, ints(u.channel_mult).c_str(), u.num_res_blocks);
  std::printf("  attention_levels %s, transformer_depth %s (middle %d), context_dim %d, proj_in/out %s\n",
              bools(u.attention_levels).c_str(),
              u.transformer_depths.empty() ? std::to_string(u.transformer_depth).c_str() : ints(u.transformer_depths).c_str(),
              u.middle_depth(), u.context_dim, u.use_linear_in_transformer ? "linear" : "conv1x1");
  if (u.adm_in_channels > 0)
    std::printf("  vector input y (label_emb) %d = pooled text %d + size conditioning 6 x %d\n", u.adm_in_channels,
                c.pooled_width(), c.size_embed_dim);
  std::string heads;  // per attention level: count x width
  for (size_t l = 0; l < u.channel_mult.size(); ++l) {
    if (!u.attention_levels[l]) continue;
    const int ch = u.model_channels * u.channel_mult[l], h = u.heads_for(ch);
    heads += (heads.empty() ? "" : ", ") + std::to_string(h) + "x" + std::to_string(h > 0 ? ch / h : 0);
  }
  std::printf("  heads per attention level %s (%s), gn_eps %g, ln_eps %g, time_embed_dim %d\n", heads.c_str(),
              u.num_head_channels > 0 ? ("num_head_channels " + std::to_string(u.num_head_channels)).c_str()
                                      : ("num_heads " + std::to_string(u.num_heads)).c_str(),
              u.gn_eps, u.ln_eps, u.time_embed_dim());

  const VaeConfig& v = c.vae;
  std::printf("\nVAE (%s)\n", kVaePrefix);
  std::printf("  in_channels %d, out_channels %d, ch %d, ch_mult %s, num_res_blocks %d\n", v.in_channels,
              v.out_channels, v.ch, ints(v.ch_mult).c_str(), v.num_res_blocks);
  std::printf("  z_channels %d, embed_dim %d, gn_eps %g, scale_factor %g, downsample factor %d\n", v.z_channels,
              v.embed_dim, v.gn_eps, v.scale_factor, v.downsample_factor());

  std::printf("\ntext encoders: %zu, %s\n", c.text_encoder_count(), text_encoder_kind(c.family));
  for (size_t i = 0; i < c.text_encoder_count(); ++i) {
    const ClipConfig& t = c.text_encoder(i);
    std::printf("text encoder %zu (%s%s)\n", i, t.prefix.c_str(),
                !t.openclip_prefix.empty() && ck.format() == CheckpointFormat::SingleFile
                    ? (", stored as " + t.openclip_prefix + "*, OpenCLIP names").c_str()
                    : "");
    std::printf("  vocab_size %d, max_length %d, width %d, layers %d (%d used), heads %d, mlp_dim %d\n", t.vocab_size,
                t.max_length, t.width, t.layers, t.used_layers(), t.heads, t.mlp_dim);
    std::printf("  ln_eps %g, activation %s, bos %d, eos %d, pad %d\n", t.ln_eps, t.quick_gelu ? "quick_gelu" : "gelu",
                t.bos_token, t.eos_token, t.pad_token);
    std::printf("  context: layer %d of %d%s%s\n", t.context_layer(1) + 1, t.layers,
                t.final_norm ? " + final_layer_norm" : " (no final LayerNorm)",
                t.pooled_dim > 0 ? (", pooled " + std::to_string(t.pooled_dim) + " (text_projection)").c_str() : "");
  }
  if (!ck.tokenizer_vocab().empty()) std::printf("  tokenizer %s, %s\n", ck.tokenizer_vocab().c_str(), ck.tokenizer_merges().c_str());

  const ScheduleConfig& s = c.schedule;
  std::printf("\nschedule   %s, beta %g .. %g, %d training steps, prediction %s%s\n", s.beta_schedule.c_str(),
              s.beta_start, s.beta_end, s.num_train_timesteps, s.prediction_type.c_str(),
              ck.alphas_cumprod().empty() ? "" : " (alphas_cumprod stored in the file)");
  {
    const LatentRgbMap& m = c.preview;
    std::string rows;
    char buf[96];
    for (int l = 0; l < m.channels && (size_t)l * 3 + 2 < m.weights.size(); ++l) {
      std::snprintf(buf, sizeof buf, "%s[%g, %g, %g]", l ? ", " : "", m.weights[(size_t)l * 3], m.weights[(size_t)l * 3 + 1],
                    m.weights[(size_t)l * 3 + 2]);
      rows += buf;
    }
    std::snprintf(buf, sizeof buf, "], bias [%g, %g, %g]", m.bias[0], m.bias[1], m.bias[2]);
    std::printf("preview    latent -> RGB %s: [%s%s\n",
                m.weights == LatentRgbMap::sd1().weights && !m.bias[0] && !m.bias[1] && !m.bias[2]    ? "(SD 1.x default)"
                : m.weights == LatentRgbMap::sdxl().weights && !m.bias[0] && !m.bias[1] && !m.bias[2] ? "(SDXL default)"
                                                                                                    : "(model config)",
                rows.c_str(), buf);
  }

  struct Net {
    const char* name;
    std::vector<TensorSpec> specs;
  };
  std::vector<Net> nets = {{"UNet", unet_layout(u)}, {"VAE", vae_layout(v)}};
  static const char* const kEncoderNames[] = {"text encoder", "text encoder 2", "text encoder 3"};
  for (size_t i = 0; i < c.text_encoder_count() && i < std::size(kEncoderNames); ++i)
    nets.push_back({kEncoderNames[i], clip_layout(c.text_encoder(i))});
  std::printf("\n%-14s %14s %12s %12s\n", "network", "parameters", "fp16 MiB", "fp32 MiB");
  int64_t total = 0;
  uint64_t t16 = 0, t32 = 0;
  for (auto& n : nets) {
    int64_t p = parameter_count(n.specs);
    uint64_t b16 = device_bytes(n.specs, DType::F16), b32 = device_bytes(n.specs, DType::F32);
    std::printf("%-14s %14lld %12.1f %12.1f\n", n.name, (long long)p, mib(b16), mib(b32));
    total += p;
    t16 += b16;
    t32 += b32;
  }
  std::printf("%-14s %14lld %12.1f %12.1f\n", "total", (long long)total, mib(t16), mib(t32));

  std::map<std::string, size_t> dtypes;
  for (const auto& n : ck.tensor_names()) dtypes[st_dtype_name(ck.dtype(n))]++;
  std::printf("\nstored dtypes ");
  for (auto& [d, n] : dtypes) std::printf(" %s: %zu tensors", d.c_str(), n);
  std::printf("\nweights    %zu tensors; %zu other tensors ignored (EMA copies, schedule buffers, position_ids)\n",
              ck.tensor_names().size(), ck.ignored().size());
  // Keys a config file carries that vksd does not read (one line: reference configs carry many).
  const auto& ign = ck.config_ignored_keys();
  if (!ign.empty()) {
    std::printf("note: %zu config key(s) not used by vksd:", ign.size());
    for (size_t i = 0; i < ign.size() && i < 6; ++i) std::printf(" %s", ign[i].substr(ign[i].rfind(": ") + 2).c_str());
    std::printf("%s\n", ign.size() > 6 ? " ..." : "");
  }
  uint64_t text16 = 0;  // every text encoder (nets[2..])
  for (size_t i = 2; i < nets.size(); ++i) text16 += device_bytes(nets[i].specs, DType::F16);
  // A text-to-image run loads the VAE's decoder half only (network_prefixes.h).
  std::vector<TensorSpec> decoder;
  for (const TensorSpec& t : nets[1].specs)
    if (has_prefix(t.name, kVaeDecoderPrefixes)) decoder.push_back(t);
  vksd::cli::print_precision_and_memory(c, {text16, device_bytes(nets[0].specs, DType::F16),
                                             device_bytes(decoder, DType::F16)});
  vksd::cli::print_measured_peaks(model);
  return 0;
}

}  // namespace

VKSD_COMMAND(info, "describe a checkpoint: format, architecture, parameters, memory", cmd_info);
