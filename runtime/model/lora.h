// LoRA files: low-rank weight deltas for a checkpoint's UNet and text encoder, merged into the
// weights when they are uploaded.
//
// A LoRA layer holds `down` (A, [rank, in] or a conv kernel [rank, in, kh, kw]) and `up`
// (B, [out, rank] or [out, rank, 1, 1]) and optionally `alpha`; applied with a user weight w it
// changes the layer's weight W [out, in(, kh, kw)] to
//     W' = W + w * (alpha / rank) * reshape(B . A)          (alpha defaults to rank)
// LoCon conv layers are the same product with A a full kh x kw kernel and B a 1x1 conv.
//
// Key formats (both are read; a file may mix them):
//   kohya / A1111     lora_unet_<module>.lora_down.weight / .lora_up.weight / .alpha, where
//                     <module> is the diffusers module path with '.' -> '_'
//                     (lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q) or the
//                     original LDM path (lora_unet_input_blocks_1_1_proj_in);
//                     lora_te_text_model_encoder_layers_0_self_attn_q_proj.* for the text encoder
//   diffusers / PEFT  unet.<diffusers module path>.lora_A.weight / .lora_B.weight (also the older
//                     .lora.down.weight / .lora.up.weight), text_encoder.text_model.<...>.lora_A.weight
// Every layer is mapped onto the ORIGINAL-layout weight name of the checkpoint it modifies
// (Checkpoint's names, whatever format the checkpoint was loaded from): kohya's '_'-joined
// names are matched against the checkpoint's own tensor names, through the diffusers renaming
// of runtime/model/diffusers.h for the diffusers module paths.
//
// Refusals (vksd::Error naming the file and key): a key that matches no layer of the model
// (policy: an error, not a warning, since a partly applied LoRA silently gives another image);
// LoRAs for other families (SDXL's lora_te1_/lora_te2_ or text_encoder_2, SD3/Flux
// transformer keys, or layers whose shapes do not fit); LyCORIS variants other than LoCon
// (LoHa, LoKr, Tucker lora_mid, DoRA); a down/up/alpha tensor that is missing or misshaped.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "runtime/model/safetensors.h"

namespace vksd {

class Checkpoint;

// One LoRA to apply: a .safetensors file and its weight (A1111's multiplier).
struct LoraRef {
  std::string path;
  double weight = 1.0;
  bool operator==(const LoraRef&) const = default;
};

enum class LoraNet { UNet, TextEncoder };

struct LoraLayer {
  std::string key;                 // the module key as stored, e.g. "lora_unet_..._to_q", "unet.down_blocks..."
  LoraNet net = LoraNet::UNet;
  bool kohya = true;               // '_'-joined module name (else a dotted diffusers/PEFT path)
  const StTensor* down = nullptr;  // A
  const StTensor* up = nullptr;    // B
  int64_t rank = 0;
  double alpha = 0;                // = rank when the file has none
  bool has_alpha = false;
  bool conv() const { return down->shape.size() == 4; }
};

// A LoRA file, parsed and checked on its own (no model needed).
class LoraFile {
 public:
  explicit LoraFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  std::string name() const;        // file stem: what <lora:NAME:w> calls it
  std::string format() const;      // "kohya", "diffusers/PEFT" or "kohya + diffusers/PEFT"
  const std::vector<LoraLayer>& layers() const { return layers_; }
  const SafetensorsFile& file() const { return file_; }
  // A1111's short hash ("addnet" hash): the first 12 hex digits of SHA-256 over the file's
  // bytes after the safetensors header. Computed on first use.
  const std::string& short_hash() const;
  // Layer's up (B) and down (A) as [out x rank] and [rank x in*kh*kw] doubles.
  std::vector<double> up_matrix(const LoraLayer& l) const;
  std::vector<double> down_matrix(const LoraLayer& l) const;

 private:
  SafetensorsFile file_;
  std::vector<LoraLayer> layers_;
  mutable std::string hash_;
};

// A LoRA file bound to a checkpoint: every layer's target weight (original-layout name).
class BoundLora {
 public:
  BoundLora(std::shared_ptr<const LoraFile> file, const Checkpoint& ckpt);
  const LoraFile& file() const { return *file_; }
  // Target weight name -> the layers of this file that change it.
  const std::map<std::string, std::vector<const LoraLayer*>>& targets() const { return targets_; }
  bool touches(const std::string& prefix) const;  // any target starting with prefix

 private:
  std::shared_ptr<const LoraFile> file_;
  std::map<std::string, std::vector<const LoraLayer*>> targets_;
};

struct ActiveLora {
  std::shared_ptr<const BoundLora> lora;
  double weight = 1.0;
};

// Adds the active LoRAs' deltas to a weight as it is uploaded: in double, in the order of
// `loras` and of each file's layers, W' = W + sum w * (alpha/rank) * (B . A), rounded to float once.
// Returns whether anything targets `name` (false: `data` untouched).
bool apply_loras(const std::vector<ActiveLora>& loras, const std::string& name, const Shape& shape,
                 std::vector<float>& data);
// The weight names under `prefix` that the active LoRAs change.
std::set<std::string> lora_targets(const std::vector<ActiveLora>& loras, const std::string& prefix);

// What `vksd info` shows about a LoRA file.
struct LoraSummary {
  std::string format;
  int unet_layers = 0, text_layers = 0, conv_layers = 0;
  int64_t min_rank = 0, max_rank = 0;
  double min_alpha = 0, max_alpha = 0;
  int layers_without_alpha = 0;
  int64_t parameters = 0;
  std::map<std::string, std::string> metadata;  // selected ss_* training metadata, if present
};
LoraSummary summarize_lora(const LoraFile& f);

// A1111's short LoRA hash of a safetensors file (see LoraFile::short_hash).
std::string lora_short_hash(const std::string& path);

// Does this safetensors file look like a LoRA (its keys) rather than a checkpoint?
bool is_lora_file(const SafetensorsFile& f);

}  // namespace vksd
