// The two text encoders that condition SDXL, as stored on disk, and their upload.
//
//   encoder 0  OpenAI CLIP ViT-L/14 (quick-GELU, pads with EOS 49407), Hugging Face
//              CLIPTextModel names: single file conditioner.embedders.0.transformer.text_model.*,
//              diffusers text_encoder/ text_model.*
//   encoder 1  OpenCLIP ViT-bigG/14 (exact GELU, pads with 0) plus its text_projection:
//              single file conditioner.embedders.1.model.* (open_clip names, fused in_proj,
//              text_projection [width, proj] applied as x @ P), diffusers text_encoder_2/
//              (CLIPTextModelWithProjection: text_model.* and text_projection.weight [proj, width],
//              a Linear without bias, i.e. the transpose)
//
// Each encoder is uploaded into its own WeightStore under the CLIPTextModel names vksd's
// TextEncoder is written with (kClipPrefix), so nn::TextEncoder runs either one unchanged.
// The projection stays on the host as [width, proj] (one row of it per prompt is all SDXL
// uses: the pooled vector, see nn/sdxl_text_conditioner.h).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "runtime/model/model_config.h"
#include "runtime/model/openclip_keys.h"

namespace vksd {

class Context;
class SafetensorsFile;
class WeightStore;

inline constexpr const char* kSdxlClipLPrefix = "conditioner.embedders.0.transformer.text_model.";
inline constexpr const char* kSdxlClipGPrefix = "conditioner.embedders.1.model.";

// What SDXL's text conditioning is made of. Shapes come from the tensors; head counts (which
// shapes cannot tell) from the defaults here (ViT-L/14: 12 heads, bigG/14: 20 heads, both 64
// wide) or from the caller.
struct SdxlTextConfig {
  ClipConfig clip_l;         // used up to its penultimate layer (skip_last_layers = 1), no final LN
  ClipConfig clip_g;         // penultimate layer for the context; ln_final(last) for the pooled
  int projection_dim = 1280; // pooled width (text_projection's output)
  int context_dim() const { return clip_l.width + clip_g.width; }  // 768 + 1280 = 2048
};
SdxlTextConfig sdxl_text_defaults();

// One stored tensor's role: which encoder (0 = CLIP-L, 1 = bigG) and the name(s) it provides
// in that encoder's store (kClipPrefix + CLIPTextModel name, or kSdxlTextProjection), as row
// slices of the stored tensor (fused q/k/v). Empty: not an SDXL text-encoder weight.
inline constexpr const char* kSdxlTextProjection = "text_projection";  // [width, proj]
struct SdxlTextKey {
  int encoder = 0;
  KeySlice slice;
};
std::vector<SdxlTextKey> sdxl_single_file_text_keys(const std::string& stored_key, const Shape& shape);

// The text encoders of an SDXL single file or diffusers folder, checked: every tensor the two
// encoders need is present with the shape the inferred config implies, nothing unexpected under
// the encoders' prefixes (an Error names each problem and the file).
class SdxlTextWeights {
 public:
  // `heads_l` / `heads_g` > 0 override the head counts (diffusers folders read them from the
  // encoders' config.json). `check_heads` false: a head count that does not divide the width
  // is left for the caller to report (`vksd info` describes such a file instead of failing).
  static SdxlTextWeights open(const std::string& path, int heads_l = 0, int heads_g = 0, bool check_heads = true);
  ~SdxlTextWeights();
  SdxlTextWeights(SdxlTextWeights&&) noexcept;

  const SdxlTextConfig& config() const { return cfg_; }
  // Encoder 0 or 1 uploaded into a new WeightStore (kClipPrefix names) in `storage`.
  std::unique_ptr<WeightStore> upload(Context& ctx, int encoder, DType storage) const;
  // The bigG text_projection as [width, projection_dim] float32.
  std::vector<float> text_projection() const;
  int64_t parameter_count(int encoder) const;  // including the projection for encoder 1

 private:
  struct Entry {
    const SafetensorsFile* file = nullptr;
    std::string stored;
    Shape shape;          // as used (a slice's rows, the projection as [width, proj])
    int64_t row0 = 0;
    bool transpose = false;  // diffusers' projection is stored [proj, width]
  };
  SdxlTextWeights() = default;
  void add(int encoder, const std::string& name, const SafetensorsFile& f, const std::string& stored, Shape shape,
           int64_t row0 = 0, bool transpose = false);
  void infer_and_validate(int heads_l, int heads_g, bool check_heads);
  std::vector<float> read(const Entry& e) const;

  std::string path_;
  SdxlTextConfig cfg_ = sdxl_text_defaults();
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> entries_[2];
};

}  // namespace vksd
