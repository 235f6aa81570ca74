// The sdxl-tiny reference set (../shared/vectors/sdxl-tiny, made by the ORIGINAL SDXL code) as the
// SDXL tests open it: the checkpoint with the head counts its shapes cannot tell (from the
// reference's model.json), the pipeline options, the prompts and the size conditioning the
// reference used (index.json meta).
#pragma once
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/diffusion/pipeline.h"
#include "runtime/diffusion/sdxl_size_conditioning.h"
#include "runtime/io/json.h"
#include "runtime/model/checkpoint.h"
#include "tests/parity_util.h"
#include "tests/test_util.h"

namespace vksd::test::sdxl_tiny {

inline const char* kSet = "sdxl-tiny";
inline std::string sdxl_model() { return vector_set_dir(kSet) + "/model.safetensors"; }
inline Npy vec(const std::string& name) { return set_npy(kSet, name); }
inline std::vector<float> arr(const std::string& name) { return vec(name).data; }

inline Json read_json(const std::string& file) {
  std::ifstream f(vector_set_dir(kSet) + "/" + file);
  return Json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
}
inline Json model_json() { return read_json("model.json"); }

// A vksd model config with what the reference's model.json says and the shapes cannot tell.
inline std::string config_json() {
  const Json j = model_json();
  return "{\"text_encoder\": {\"heads\": " + std::to_string(j.find("clip_l")->int_or("num_attention_heads", 0)) +
         "}, \"text_encoder_2\": {\"heads\": " + std::to_string(j.find("clip_bigg")->int_or("heads", 0)) +
         "}, \"unet\": {\"num_head_channels\": " + std::to_string(j.find("unet")->int_or("num_head_channels", 0)) + "}}";
}
inline Checkpoint sdxl_checkpoint() { return Checkpoint::open_with_config_text(sdxl_model(), config_json()); }

inline PipelineOptions pipeline_options() {
  PipelineOptions o;
  o.model_path = sdxl_model();
  o.config_json = config_json();
  o.vocab_path = shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz";
  o.fp32 = true;
  return o;
}

// The reference's prompts (rows of tokens_* / text_*), from index.json meta.prompts.
inline std::vector<std::string> prompts() {
  const Json index = read_json("index.json");
  std::vector<std::string> r;
  for (const Json& p : index.find("meta")->find("prompts")->as_array()) r.push_back(p.as_string("prompt"));
  return r;
}

// The SDXL size conditioning the reference used throughout (index.json meta.size_conditioning:
// sgm's batch keys, sizes as (h, w), the crop as (top, left)).
inline SdxlSizeConditioning reference_sizes() {
  const Json index = read_json("index.json");
  const Json& m = *index.find("meta")->find("size_conditioning");
  auto pair = [&](const char* key, int& a, int& b) {
    const auto& v = m.find(key)->as_array();
    a = (int)v.at(0).as_int(), b = (int)v.at(1).as_int();
  };
  SdxlSizeConditioning s;
  pair("original_size_as_tuple", s.original_h, s.original_w);
  pair("crop_coords_top_left", s.crop_top, s.crop_left);
  pair("target_size_as_tuple", s.target_h, s.target_w);
  return s;
}

}  // namespace vksd::test::sdxl_tiny
