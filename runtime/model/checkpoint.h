// Checkpoint: an SD 1.x or SD 2.x model on disk, whatever its format, seen through the ORIGINAL
// SD 1.x single-file key layout (model.diffusion_model.*, first_stage_model.*,
// cond_stage_model.transformer.text_model.*), with its family and architecture (ModelConfig).
//
// Formats:
//   single file  one .safetensors in the original layout (e.g. v1-5-pruned-emaonly.safetensors,
//                v2-1_768-ema-pruned.safetensors, whose OpenCLIP text tower cond_stage_model.model.*
//                is renamed and its fused q/k/v sliced by runtime/model/openclip_keys.h)
//   diffusers    a folder with unet/, vae/, text_encoder/ (safetensors, optionally .fp16),
//                their config.json files, tokenizer/, scheduler/, model_index.json; every key is
//                renamed to its original name (runtime/model/diffusers.h)
//
// Opening validates everything up front: the family is decided from the tensor names
// (runtime/model/model_family.h: other families are refused by name), the architecture is
// inferred from the tensors' shapes, the complete expected tensor list is derived from it
// (runtime/model/sd1_layout.h), and any missing, unexpected or wrongly shaped network tensor is
// an Error naming it. What shapes cannot tell (head counts, eps, schedule, prediction type)
// comes from the family's defaults, then diffusers config.json files, then a vksd model config
// JSON (docs/model-config.md) found next to the checkpoint as <name>.json / <name>.vksd.json or
// given explicitly.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "runtime/model/model_config.h"
#include "runtime/model/safetensors.h"

namespace vksd {

class Context;
class Json;
class WeightStore;

enum class CheckpointFormat { SingleFile, Diffusers };
const char* checkpoint_format_name(CheckpointFormat f);

class Checkpoint {
 public:
  // `path`: a .safetensors file or a diffusers folder. `config_path`: a vksd model config JSON
  // ("" = look beside the checkpoint).
  static Checkpoint open(const std::string& path, const std::string& config_path = "");
  // Same, with the vksd model config given as JSON text (tests, embedded defaults).
  static Checkpoint open_with_config_text(const std::string& path, const std::string& config_json);

  CheckpointFormat format() const { return format_; }
  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  // Where the config came from, for messages: "SD 1.x defaults", file names applied in order.
  const std::vector<std::string>& config_sources() const { return config_sources_; }
  // The noise prediction the UNet was trained for ("epsilon" or "v_prediction"; "eps" and "v"
  // are accepted), overriding the config (single files do not say it; `--prediction`). `what`
  // names the source in config_sources().
  void set_prediction_type(const std::string& prediction, const std::string& what);
  // Config keys that were present but not understood (e.g. "unet.image_size"), as "file: key".
  const std::vector<std::string>& config_ignored_keys() const { return config_ignored_; }

  // Network weights (original names, sorted) starting with `prefix` ("" = all three networks).
  std::vector<std::string> tensor_names(const std::string& prefix = "") const;
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const Shape& shape(const std::string& name) const;  // original-layout shape
  StDType dtype(const std::string& name) const;       // as stored in the file
  std::string source(const std::string& name) const;  // "file: stored key", for messages
  std::vector<float> read_f32(const std::string& name) const;
  // The tensor's little-endian bytes as `storage` (F16 or F32): the file's own bytes when it
  // stores that type (an fp16 checkpoint into fp16 storage is copied, never widened), else
  // converted exactly as read_f32() followed by f32_to_f16() (round to nearest even) would.
  std::vector<uint8_t> read_as(const std::string& name, DType storage) const;

  // Tensors in the files that are not network weights and are ignored (EMA copies, schedule
  // buffers, position_ids, ...), as "file: key".
  const std::vector<std::string>& ignored() const { return ignored_; }
  // The training schedule's alphas_cumprod if the single file stores it (else empty).
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }
  // Diffusers tokenizer files ("" when absent; single files use the built-in CLIP vocabulary).
  const std::string& tokenizer_vocab() const { return tokenizer_vocab_; }
  const std::string& tokenizer_merges() const { return tokenizer_merges_; }

 private:
  struct Entry {
    const SafetensorsFile* file = nullptr;
    const StTensor* tensor = nullptr;
    Shape shape;  // original-layout shape (may be a reshape of the stored one)
    int64_t row0 = 0;  // a slice: rows [row0, row0 + shape[0]) of the stored tensor
    bool transpose = false;  // 2-D, stored [shape[1], shape[0]] (diffusers' text_projection)
  };
  Checkpoint() = default;
  static Checkpoint open_impl(const std::string& path, const std::string& config_path, const std::string* config_text);
  void add_tensor(const std::string& original_name, const SafetensorsFile& f, const StTensor& t, Shape shape,
                  int64_t row0 = 0, bool transpose = false);
  const Entry& entry(const std::string& name) const;
  void load_single_file();
  void load_diffusers_folder();
  void infer_architecture();  // shape-derived ModelConfig fields
  void validate();            // every expected tensor present with its shape, nothing else

  CheckpointFormat format_ = CheckpointFormat::SingleFile;
  std::string path_;
  ModelConfig config_;
  std::vector<std::string> config_sources_;
  std::vector<std::string> config_ignored_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> tensors_;
  std::vector<std::string> ignored_;
  std::vector<float> alphas_cumprod_;
  std::string tokenizer_vocab_, tokenizer_merges_;
  std::vector<std::pair<std::string, std::string>> diffusers_configs_;  // component, config.json
};

// Apply a vksd model config JSON (docs/model-config.md) on top of `cfg`. Shape-derived fields
// (channels, levels, ...) may be stated but must then equal what `cfg` already says (Error
// otherwise); a known key with a wrong type or value is an Error; unknown keys are appended to
// `ignored` (so that a file with extra keys, like the reference model.json, still applies).
// `what` names the source in messages. Relative file names in the config (tokenizer.vocab) are
// resolved against `base_dir` (the config file's folder; "" = the working directory).
void apply_model_config_json(ModelConfig& cfg, const Json& j, const std::string& what,
                             std::vector<std::string>* ignored = nullptr, const std::string& base_dir = "");

// Upload the network weights starting with `prefix` (e.g. kUNetPrefix; "" = all) into a new
// WeightStore, converted to `storage`. Names stay the full original names. `patch`, when given,
// may change each tensor's host data (name, shape, data) before it is uploaded (LoRA merging).
using WeightPatch = std::function<void(const std::string&, const Shape&, std::vector<float>&)>;
std::unique_ptr<WeightStore> load_weights(Context& ctx, const Checkpoint& ckpt, const std::string& prefix,
                                          DType storage, const WeightPatch& patch = {});
// The tensors under any of `prefixes`, into one WeightStore (the VAE's decoder half).
std::unique_ptr<WeightStore> load_weights(Context& ctx, const Checkpoint& ckpt, const std::vector<std::string>& prefixes,
                                          DType storage, const WeightPatch& patch = {});

}  // namespace vksd
