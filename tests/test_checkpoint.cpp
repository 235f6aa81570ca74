// Checkpoint loading: the safetensors reader's validation (one test per malformed field), the
// tiny reference model's inferred architecture against its model.json, a diffusers folder built
// here from the tiny model with the published diffusers naming (reverse mapping written
// independently below) re-loading to identical tensors, architecture errors, device upload, and
// the `vksd info` command.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "runtime/model/checkpoint.h"
#include "runtime/model/lora.h"
#include "runtime/model/model_family.h"
#include "runtime/model/safetensors_writer.h"
#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/gpu/memory.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/diffusion/pipeline.h"
#include "tests/sdxl_tiny.h"
#include "tests/test_util.h"

using namespace vksd;
namespace fs = std::filesystem;

namespace {

std::string tiny_model() { return test::vectors_dir() + "/model.safetensors"; }

// A fresh temporary directory, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("vksd_ckpt_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// ---- a minimal safetensors writer -------------------------------------------------------------

struct WTensor {
  std::string name, dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
};

WTensor f32_tensor(const std::string& name, Shape shape, const std::vector<float>& v) {
  WTensor t{name, "F32", std::move(shape), std::vector<uint8_t>(v.size() * 4)};
  // memcpy from an empty vector's null data() is UB even for 0 bytes (UBSan, the sanitized build).
  if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

WTensor f16_tensor(const std::string& name, Shape shape, const std::vector<float>& v) {
  WTensor t{name, "F16", std::move(shape), std::vector<uint8_t>(v.size() * 2)};
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h = f32_to_f16(v[i]);
    std::memcpy(t.bytes.data() + 2 * i, &h, 2);
  }
  return t;
}

void write_raw(const std::string& path, const std::string& header, const std::vector<uint8_t>& data) {
  std::ofstream f(path, std::ios::binary);
  uint64_t n = header.size();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = (uint8_t)(n >> (8 * i));
  f.write((const char*)len, 8);
  f.write(header.data(), (std::streamsize)header.size());
  f.write((const char*)data.data(), (std::streamsize)data.size());
}

std::string shape_json(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

void write_st(const std::string& path, const std::vector<WTensor>& ts) {
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::vector<uint8_t> data;
  for (const auto& t : ts) {
    uint64_t b = data.size();
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
    h += ",\"" + json_escape(t.name) + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
         ",\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(data.size()) + "]}";
  }
  write_raw(path, h + "}", data);
}

// Every tensor of a safetensors file, to re-write (possibly edited).
std::vector<WTensor> read_all(const std::string& path) {
  SafetensorsFile f(path);
  std::vector<WTensor> r;
  for (const auto& t : f.tensors()) {
    auto b = f.bytes(t);
    r.push_back({t.name, st_dtype_name(t.dtype), t.shape, std::vector<uint8_t>(b.begin(), b.end())});
  }
  return r;
}

using vksd::test::error_of;

bool contains(const std::string& s, const std::string& w) { return s.find(w) != std::string::npos; }

const char* kTinyHeads = R"({"unet": {"num_heads": 2}, "text_encoder": {"heads": 2}})";

}  // namespace

// ---- safetensors reader ------------------------------------------------------------------------

TEST_CASE("safetensors: reads F32/F16/BF16/I32/I64 and converts to f32 exactly") {
  TempDir d;
  std::vector<float> vals = {0.f, 1.f, -2.5f, 0.099975586f, 65504.f, -0.000061035156f};  // all exact in f16
  std::vector<WTensor> ts = {f32_tensor("a.f32", {2, 3}, vals), f16_tensor("b.f16", {6}, vals)};
  WTensor bf{"c.bf16", "BF16", {3}, {}};
  for (float x : {1.f, -3.f, 0.15625f}) {  // exact in bf16: the upper 16 bits of the f32
    uint32_t u;
    std::memcpy(&u, &x, 4);
    uint16_t h = (uint16_t)(u >> 16);
    bf.bytes.push_back((uint8_t)h);
    bf.bytes.push_back((uint8_t)(h >> 8));
  }
  ts.push_back(bf);
  WTensor i64{"pos.i64", "I64", {1, 3}, std::vector<uint8_t>(24, 0)};
  for (int i = 0; i < 3; ++i) i64.bytes[8 * i] = (uint8_t)(10 + i);
  ts.push_back(i64);
  WTensor i32{"n.i32", "I32", {2}, {0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0}};
  ts.push_back(i32);
  ts.push_back(f32_tensor("empty", {0, 4}, {}));
  write_st(d / "ok.safetensors", ts);

  SafetensorsFile f(d / "ok.safetensors");
  REQUIRE(f.tensors().size() == 6);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.at("a.f32").shape == Shape{2, 3});
  CHECK(f.to_f32(f.at("a.f32")) == vals);
  CHECK(f.to_f32(f.at("b.f16")) == vals);
  CHECK(f.to_f32(f.at("c.bf16")) == std::vector<float>{1.f, -3.f, 0.15625f});
  CHECK(f.to_f32(f.at("pos.i64")) == std::vector<float>{10.f, 11.f, 12.f});
  CHECK(f.to_f32(f.at("n.i32")) == std::vector<float>{-1.f, 7.f});
  CHECK(f.at("empty").numel() == 0);
  CHECK(f.find("nope") == nullptr);
  CHECK(contains(error_of([&] { f.at("nope"); }), "no tensor 'nope'"));
}

TEST_CASE("safetensors: every malformed header field is an error naming the file and tensor") {
  TempDir d;
  const std::vector<uint8_t> data16(16, 0);
  auto err_for = [&](const std::string& header, const std::vector<uint8_t>& data) {
    std::string p = d / "bad.safetensors";
    write_raw(p, header, data);
    return error_of([&] { SafetensorsFile f(p); });
  };
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, uint64_t a, uint64_t b) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(a) + "," + std::to_string(b) + "]}";
  };

  SUBCASE("file shorter than the 8-byte length") {
    std::string p = d / "short.safetensors";
    std::ofstream(p, std::ios::binary).write("abcd", 4);
    std::string e = error_of([&] { SafetensorsFile f(p); });
    CHECK(contains(e, "short.safetensors"));
    CHECK(contains(e, "too short"));
  }
  SUBCASE("truncated file: data cut off") {
    std::string p = d / "trunc.safetensors";
    write_st(p, {f32_tensor("w", {4}, {1, 2, 3, 4})});
    fs::resize_file(p, fs::file_size(p) - 5);
    std::string e = error_of([&] { SafetensorsFile f(p); });
    CHECK(contains(e, "trunc.safetensors"));
    CHECK(contains(e, "tensor 'w'"));
    CHECK(contains(e, "outside the data area (11 bytes)"));
  }
  SUBCASE("header length beyond the file") {
    std::string p = d / "hl.safetensors";
    std::ofstream f(p, std::ios::binary);
    uint8_t len[8] = {0x00, 0x10, 0, 0, 0, 0, 0, 0};  // 4096 > file
    f.write((const char*)len, 8);
    f.write("{}", 2);
    f.close();
    std::string e = error_of([&] { SafetensorsFile sf(p); });
    CHECK(contains(e, "header length 4096 exceeds the file (10 bytes)"));
  }
  SUBCASE("malformed JSON") {
    std::string e = err_for("{\"w\":{\"dtype\":\"F32\",", data16);
    CHECK(contains(e, "bad.safetensors"));
    CHECK(contains(e, "not valid JSON"));
  }
  SUBCASE("header not an object") { CHECK(contains(err_for("[1,2]", data16), "not a JSON object")); }
  SUBCASE("unknown dtype") {
    std::string e = err_for("{" + entry("w", "F64", "[2]", 0, 16) + "}", data16);
    CHECK(contains(e, "tensor 'w'"));
    CHECK(contains(e, "unsupported dtype 'F64'"));
  }
  SUBCASE("span outside the file") {
    std::string e = err_for("{" + entry("w", "F32", "[8]", 0, 32) + "}", data16);
    CHECK(contains(e, "tensor 'w': data span [0,32) lies outside the data area (16 bytes)"));
  }
  SUBCASE("begin after end") {
    CHECK(contains(err_for("{" + entry("w", "F32", "[0]", 8, 4) + "}", data16), "begin after end"));
  }
  SUBCASE("overlapping spans") {
    std::string e = err_for("{" + entry("a", "F32", "[3]", 0, 12) + "," + entry("b", "F32", "[2]", 8, 16) + "}", data16);
    CHECK(contains(e, "overlaps"));
    CHECK(contains(e, "'a'"));
    CHECK(contains(e, "'b'"));
  }
  SUBCASE("shape does not match the span") {
    std::string e = err_for("{" + entry("w", "F16", "[2,3]", 0, 16) + "}", data16);
    CHECK(contains(e, "tensor 'w': shape [2,3] x F16 needs 12 bytes but its data span [0,16) holds 16"));
  }
  SUBCASE("negative or fractional shape") {
    CHECK(contains(err_for("{" + entry("w", "F32", "[-4]", 0, 16) + "}", data16), "non-negative integers"));
    CHECK(contains(err_for("{" + entry("w", "F32", "[1.5]", 0, 16) + "}", data16), "non-negative integers"));
  }
  SUBCASE("missing or unknown fields") {
    CHECK(contains(err_for("{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", data16), "needs dtype, shape and data_offsets"));
    CHECK(contains(err_for("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":1}}", data16),
                   "unknown header field 'x'"));
    CHECK(contains(err_for("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", data16), "[begin, end] pair"));
  }
  SUBCASE("metadata must map strings to strings") {
    CHECK(contains(err_for("{\"__metadata__\":{\"k\":1}}", data16), "__metadata__ entry 'k' is not a string"));
  }
  SUBCASE("shape product overflow") {
    std::string e = err_for("{" + entry("w", "F32", "[4294967296,4294967296,16]", 0, 16) + "}", data16);
    CHECK(contains(e, "more than 2^64"));
  }
}

// ---- the tiny reference model -------------------------------------------------------------------

TEST_CASE("checkpoint: the tiny model's inferred architecture equals its model.json") {
  REQUIRE_MESSAGE(!(!test::shared_available()), "reference data missing (../shared beside the checkout)");
  Checkpoint ck = Checkpoint::open_with_config_text(tiny_model(), kTinyHeads);
  const ModelConfig& c = ck.config();
  Json ref = Json::parse([&] {
    std::ifstream f(test::vectors_dir() + "/model.json");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }());
  const Json& ru = *ref.find("unet");
  const Json& rv = *ref.find("vae");
  const Json& rt = *ref.find("text_encoder");
  auto ints = [](const Json& a) {
    std::vector<int> r;
    for (const Json& e : a.as_array()) r.push_back((int)e.as_int());
    return r;
  };

  CHECK(ck.format() == CheckpointFormat::SingleFile);
  CHECK(c.unet.in_channels == ru.int_or("in_channels", -1));
  CHECK(c.unet.out_channels == ru.int_or("out_channels", -1));
  CHECK(c.unet.model_channels == ru.int_or("model_channels", -1));
  CHECK(c.unet.channel_mult == ints(*ru.find("channel_mult")));
  CHECK(c.unet.num_res_blocks == ru.int_or("num_res_blocks", -1));
  CHECK(c.unet.transformer_depth == ru.int_or("transformer_depth", -1));
  CHECK(c.unet.context_dim == ru.int_or("context_dim", -1));
  CHECK(c.unet.num_heads == ru.int_or("num_heads", -1));
  CHECK(c.unet.time_embed_dim() == ru.int_or("time_embed_dim", -1));
  CHECK_FALSE(c.unet.use_linear_in_transformer);
  const auto& levels = ru.find("levels")->as_array();
  REQUIRE(levels.size() == c.unet.attention_levels.size());
  for (size_t l = 0; l < levels.size(); ++l) {
    CHECK(c.unet.attention_levels[l] == levels[l].bool_or("has_attention", false));
    CHECK(c.unet.heads_for((int)levels[l].int_or("channels", 0)) == levels[l].int_or("num_heads", -1));
  }
  CHECK(c.unet.gn_eps == (float)ru.find("groupnorm")->number_or("eps", 0));
  CHECK(c.unet.ln_eps == (float)ru.number_or("layernorm_eps", 0));

  CHECK(c.vae.ch == rv.int_or("ch", -1));
  CHECK(c.vae.ch_mult == ints(*rv.find("ch_mult")));
  CHECK(c.vae.num_res_blocks == rv.int_or("num_res_blocks", -1));
  CHECK(c.vae.z_channels == rv.int_or("z_channels", -1));
  CHECK(c.vae.embed_dim == rv.int_or("embed_dim", -1));
  CHECK(c.vae.in_channels == rv.int_or("in_channels", -1));
  CHECK(c.vae.out_channels == rv.int_or("out_ch", -1));
  CHECK(c.vae.downsample_factor() == rv.int_or("downsample_factor", -1));
  CHECK(c.vae.gn_eps == (float)rv.find("groupnorm")->number_or("eps", 0));
  CHECK(c.vae.scale_factor == (float)ref.number_or("scale_factor", 0));

  CHECK(c.clip.width == rt.int_or("width", -1));
  CHECK(c.clip.layers == rt.int_or("layers", -1));
  CHECK(c.clip.heads == rt.int_or("heads", -1));
  CHECK(c.clip.vocab_size == rt.int_or("vocab_size", -1));
  CHECK(c.clip.max_length == rt.int_or("context_length", -1));
  CHECK(c.clip.mlp_dim == rt.int_or("mlp_dim", -1));
  CHECK(c.clip.ln_eps == (float)rt.number_or("layernorm_eps", 0));
  CHECK(c.clip.bos_token == rt.int_or("bos_token", -1));
  CHECK(c.clip.eos_token == rt.int_or("eos_token", -1));
  CHECK(c.clip.pad_token == rt.int_or("pad_token", -1));

  // Parameter counts from the expected layout equal the reference's own counts.
  const Json& pc = *ref.find("parameter_counts");
  CHECK(parameter_count(unet_layout(c.unet)) == pc.int_or("unet", -1));
  CHECK(parameter_count(vae_layout(c.vae)) == pc.int_or("vae", -1));
  CHECK(parameter_count(clip_layout(c.clip)) == pc.int_or("text_encoder_exported", -1));
  CHECK(ck.tensor_names().size() == sd1_layout(c).size());

  // The schedule defaults reproduce the file's alphas_cumprod (computed here in double).
  const ScheduleConfig& s = c.schedule;
  REQUIRE(ck.alphas_cumprod().size() == (size_t)s.num_train_timesteps);
  double ac = 1, worst = 0;
  for (int t = 0; t < s.num_train_timesteps; ++t) {
    double sb = std::sqrt(s.beta_start) + (std::sqrt(s.beta_end) - std::sqrt(s.beta_start)) * t / (s.num_train_timesteps - 1);
    ac *= 1 - sb * sb;
    worst = std::max(worst, std::fabs(ck.alphas_cumprod()[t] - ac) / ac);
  }
  CHECK(worst < 1e-6);
  CHECK(s.prediction_type == "epsilon");

  // Tensor data: read_f32 is the stored f32 data.
  SafetensorsFile raw(tiny_model());
  for (const char* n : {"model.diffusion_model.out.2.weight", "first_stage_model.decoder.mid.attn_1.q.weight",
                        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"}) {
    CHECK(ck.read_f32(n) == raw.to_f32(raw.at(n)));
    CHECK(ck.shape(n) == raw.at(n).shape);
    CHECK(ck.dtype(n) == StDType::F32);
  }
  // position_ids (I64) and the schedule buffers are not weights.
  CHECK_FALSE(ck.has("cond_stage_model.transformer.text_model.embeddings.position_ids"));
  CHECK_FALSE(ck.has("alphas_cumprod"));
}

TEST_CASE("checkpoint: model config found beside the file, given explicitly, or missing") {
  REQUIRE_SHARED();
  TempDir d;
  fs::create_symlink(tiny_model(), d / "tiny.safetensors");
  SUBCASE("no config: SD 1.x defaults (12 CLIP heads) do not divide width 64") {
    std::string e = error_of([&] { Checkpoint::open(d / "tiny.safetensors"); });
    CHECK(contains(e, "text encoder width 64 is not divisible into 12 heads"));
  }
  SUBCASE("<name>.vksd.json beside the file") {
    std::ofstream(d / "tiny.vksd.json") << R"({"name": "tiny", "unet": {"num_heads": 2}, "text_encoder": {"heads": 2},
      "schedule": {"prediction_type": "epsilon"}, "scale_factor": 0.5})";
    Checkpoint ck = Checkpoint::open(d / "tiny.safetensors");
    CHECK(ck.config().name == "tiny");
    CHECK(ck.config().unet.num_heads == 2);
    CHECK(ck.config().clip.heads == 2);
    CHECK(ck.config().vae.scale_factor == 0.5f);
    CHECK(ck.config_ignored_keys().empty());
  }
  SUBCASE("explicit path; shape fields are cross-checked") {
    std::ofstream(d / "c.json") << R"({"unet": {"num_heads": 2, "model_channels": 32, "channel_mult": [1, 2]},
      "text_encoder": {"heads": 2, "layers": 2}, "typo_key": 1})";
    Checkpoint ck = Checkpoint::open(d / "tiny.safetensors", d / "c.json");
    CHECK(ck.config().unet.num_heads == 2);
    REQUIRE(ck.config_ignored_keys().size() == 1);
    CHECK(contains(ck.config_ignored_keys()[0], "typo_key"));
    std::ofstream(d / "wrong.json") << R"({"unet": {"num_heads": 2, "model_channels": 320}, "text_encoder": {"heads": 2}})";
    std::string e = error_of([&] { Checkpoint::open(d / "tiny.safetensors", d / "wrong.json"); });
    CHECK(contains(e, "unet.model_channels = 320 but the tensors say 32"));
  }
  SUBCASE("bad config values") {
    CHECK(contains(error_of([&] { Checkpoint::open_with_config_text(d / "tiny.safetensors", R"({"unet": {"num_heads": "two"}})"); }),
                   "unet.num_heads"));
    CHECK(contains(error_of([&] {
                     Checkpoint::open_with_config_text(d / "tiny.safetensors",
                                                       R"({"unet": {"num_heads": 2}, "text_encoder": {"heads": 2}, "schedule": {"prediction_type": "x0"}})");
                   }),
                   "prediction_type 'x0'"));
    CHECK(contains(error_of([&] { Checkpoint::open(d / "tiny.safetensors", d / "absent.json"); }), "not found"));
    CHECK(contains(error_of([&] { Checkpoint::open_with_config_text(d / "tiny.safetensors", "{oops"); }), "JSON"));
  }
  SUBCASE("the reference model.json beside the original file is understood") {
    Checkpoint ck = Checkpoint::open(tiny_model());
    CHECK(ck.config().unet.num_heads == 2);
    CHECK(ck.config().clip.heads == 2);
  }
}

TEST_CASE("checkpoint: model config sample_size and tokenizer.vocab (relative to the config file)") {
  REQUIRE_SHARED();
  TempDir d;
  fs::create_directories(d.path / "model" / "tok");
  fs::create_directories(d.path / "configs");
  fs::create_symlink(tiny_model(), d / "model/tiny.safetensors");
  std::ofstream(d / "model/tok/vocab.txt.gz") << "stand-in";  // the config check needs the file, not its content
  const std::string heads = R"("unet": {"num_heads": 2}, "text_encoder": {"heads": 2})";

  SUBCASE("defaults: SD 1.x size 512, no vocabulary named") {
    Checkpoint ck = Checkpoint::open_with_config_text(d / "model/tiny.safetensors", "{" + heads + "}");
    CHECK(ck.config().sample_size == 512);
    CHECK(ck.config().tokenizer_vocab.empty());
  }
  SUBCASE("beside the model: the vocabulary path is relative to the config file's folder") {
    std::ofstream(d / "model/tiny.json") << "{" + heads + R"(, "sample_size": 64, "tokenizer": {"vocab": "tok/vocab.txt.gz"}})";
    Checkpoint ck = Checkpoint::open(d / "model/tiny.safetensors");
    CHECK(ck.config().sample_size == 64);
    CHECK(fs::equivalent(ck.config().tokenizer_vocab, d / "model/tok/vocab.txt.gz"));
    CHECK(ck.config_ignored_keys().empty());
  }
  SUBCASE("an explicit config elsewhere: relative to that config, not to the model or the working directory") {
    std::ofstream(d / "configs/c.json") << "{" + heads + R"(, "tokenizer": {"vocab": "../model/tok/vocab.txt.gz"}})";
    Checkpoint ck = Checkpoint::open(d / "model/tiny.safetensors", d / "configs/c.json");
    CHECK(fs::equivalent(ck.config().tokenizer_vocab, d / "model/tok/vocab.txt.gz"));
    std::ofstream(d / "configs/bad.json") << "{" + heads + R"(, "tokenizer": {"vocab": "tok/vocab.txt.gz"}})";
    std::string e = error_of([&] { Checkpoint::open(d / "model/tiny.safetensors", d / "configs/bad.json"); });
    CHECK(contains(e, "bad.json"));
    CHECK(contains(e, "tokenizer.vocab"));
    CHECK(contains(e, "does not exist"));
  }
  SUBCASE("config text: relative to the checkpoint's folder; absolute paths are kept") {
    Checkpoint ck = Checkpoint::open_with_config_text(d / "model/tiny.safetensors",
                                                      "{" + heads + R"(, "tokenizer": {"vocab": "tok/vocab.txt.gz"}})");
    CHECK(fs::equivalent(ck.config().tokenizer_vocab, d / "model/tok/vocab.txt.gz"));
    Checkpoint abs = Checkpoint::open_with_config_text(
        d / "model/tiny.safetensors", "{" + heads + R"(, "tokenizer": {"vocab": ")" + (d / "model/tok/vocab.txt.gz") + R"("}})");
    CHECK(abs.config().tokenizer_vocab == d / "model/tok/vocab.txt.gz");
  }
  SUBCASE("bad values are errors naming the key") {
    auto err = [&](const std::string& extra) {
      return error_of([&] { Checkpoint::open_with_config_text(d / "model/tiny.safetensors", "{" + heads + ", " + extra + "}"); });
    };
    CHECK(contains(err(R"("sample_size": 0)"), "sample_size must be a positive multiple of 8"));
    CHECK(contains(err(R"("sample_size": 60)"), "sample_size must be a positive multiple of 8 pixels (got 60)"));
    CHECK(contains(err(R"("sample_size": 64.5)"), "sample_size"));
    CHECK(contains(err(R"("sample_size": "64")"), "sample_size"));
    CHECK(contains(err(R"("tokenizer": "tok/vocab.txt.gz")"), "tokenizer must be an object"));
    CHECK(contains(err(R"("tokenizer": {"vocab": 3})"), "tokenizer.vocab"));
    CHECK(contains(err(R"("tokenizer": {"vocab": ""})"), "tokenizer.vocab is empty"));
    CHECK(contains(err(R"("tokenizer": {"vocab": "absent.txt.gz"})"), "absent.txt.gz"));
    // Unknown tokenizer keys are listed, not fatal (like every other section).
    Checkpoint ck = Checkpoint::open_with_config_text(d / "model/tiny.safetensors",
                                                      "{" + heads + R"(, "tokenizer": {"merges": "m.txt"}})");
    REQUIRE(ck.config_ignored_keys().size() == 1);
    CHECK(contains(ck.config_ignored_keys()[0], "tokenizer.merges"));
  }
}

// ---- bad checkpoints ------------------------------------------------------------------------------

TEST_CASE("checkpoint: missing, misshapen and unexpected tensors are errors naming them") {
  REQUIRE_SHARED();
  TempDir d;
  auto base = read_all(tiny_model());
  auto open_edited = [&](auto edit) {
    auto ts = base;
    edit(ts);
    std::string p = d / "edited.safetensors";
    write_st(p, ts);
    return error_of([&] { Checkpoint::open_with_config_text(p, kTinyHeads); });
  };
  auto erase = [](std::vector<WTensor>& ts, const std::string& name) {
    auto it = std::find_if(ts.begin(), ts.end(), [&](auto& t) { return t.name == name; });
    REQUIRE(it != ts.end());
    ts.erase(it);
  };

  SUBCASE("unchanged copy loads") {
    CHECK(open_edited([](auto&) {}) == "");
  }
  SUBCASE("CLIP keys without the text_model level (old transformers) load") {
    CHECK(open_edited([](auto& ts) {
            const std::string p = "cond_stage_model.transformer.text_model.";
            for (auto& t : ts)
              if (t.name.rfind(p, 0) == 0) t.name = "cond_stage_model.transformer." + t.name.substr(p.size());
          }) == "");
  }
  SUBCASE("missing tensor") {
    std::string e = open_edited([&](auto& ts) { erase(ts, "model.diffusion_model.output_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"); });
    CHECK(contains(e, "missing 1"));
    CHECK(contains(e, "model.diffusion_model.output_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"));
  }
  SUBCASE("missing tensor needed to infer the architecture") {
    std::string e = open_edited([&](auto& ts) { erase(ts, "first_stage_model.decoder.conv_in.weight"); });
    CHECK(contains(e, "cannot infer the VAE architecture: missing tensor 'first_stage_model.decoder.conv_in.weight'"));
  }
  SUBCASE("wrong shape") {
    std::string e = open_edited([](auto& ts) {
      for (auto& t : ts)
        if (t.name == "first_stage_model.encoder.down.1.block.0.conv2.weight") t.shape = {64, 64, 9, 1};
    });
    CHECK(contains(e, "first_stage_model.encoder.down.1.block.0.conv2.weight has shape [64,64,9,1], expected [64,64,3,3]"));
  }
  SUBCASE("unexpected extra tensor in the UNet") {
    std::string e = open_edited([](auto& ts) {
      ts.push_back(f32_tensor("model.diffusion_model.input_blocks.1.2.extra.weight", {4}, {1, 2, 3, 4}));
    });
    CHECK(contains(e, "unexpected 1"));
    CHECK(contains(e, "model.diffusion_model.input_blocks.1.2.extra.weight"));
  }
  SUBCASE("unsupported architecture: levels with different ResBlock counts") {
    std::string e = open_edited([&](auto& ts) {
      std::vector<WTensor> keep;
      for (auto& t : ts)
        if (t.name.rfind("model.diffusion_model.input_blocks.5.", 0) != 0) keep.push_back(t);
      ts = keep;
    });
    CHECK(contains(e, "different numbers of ResBlocks"));
  }
  SUBCASE("an SD 2.x OpenCLIP text encoder beside the SD 1.x one") {
    std::string e = open_edited([](auto& ts) {
      ts.push_back(f32_tensor("cond_stage_model.model.ln_final.weight", {4}, {1, 2, 3, 4}));
    });
    CHECK(contains(e, "two text encoders"));
    CHECK(contains(e, "OpenCLIP"));
  }
  SUBCASE("integer weights") {
    std::string e = open_edited([](auto& ts) {
      for (auto& t : ts)
        if (t.name == "model.diffusion_model.out.2.bias") t.dtype = "I32";
    });
    CHECK(contains(e, "model.diffusion_model.out.2.bias"));
    CHECK(contains(e, "integer"));
  }
  SUBCASE("not a checkpoint at all") {
    write_st(d / "other.safetensors", {f32_tensor("foo", {1}, {1})});
    CHECK(contains(error_of([&] { Checkpoint::open(d / "other.safetensors"); }), "no UNet tensors"));
    CHECK(contains(error_of([&] { Checkpoint::open(d / "nothing.safetensors"); }), "no such file"));
    std::ofstream(d / "x.ckpt") << "pickle";
    CHECK(contains(error_of([&] { Checkpoint::open(d / "x.ckpt"); }), "pickle"));
  }
}

// ---- diffusers folder ---------------------------------------------------------------------------

namespace {

// Original -> diffusers names, written from the published diffusers conversion tables (the
// prefix correspondences of scripts/convert_diffusers_to_original_stable_diffusion.py), for a
// UNet with `levels` levels of `nrb` ResBlocks, attention on the levels in `attn`.
struct ReverseMap {
  std::vector<std::pair<std::string, std::string>> unet_prefix, unet_resnet, vae_prefix, vae_attn;

  ReverseMap(int levels, int nrb, const std::vector<bool>& attn, int vae_levels, bool old_vae_attention) {
    auto P = [&](std::string sd, std::string hf) { unet_prefix.emplace_back(sd, hf); };
    P("time_embed.0.", "time_embedding.linear_1.");
    P("time_embed.2.", "time_embedding.linear_2.");
    P("input_blocks.0.0.", "conv_in.");
    P("out.0.", "conv_norm_out.");
    P("out.2.", "conv_out.");
    for (int i = 0; i < levels; ++i) {
      for (int j = 0; j < nrb; ++j) {
        std::string sd = "input_blocks." + std::to_string((nrb + 1) * i + j + 1);
        P(sd + ".0.", "down_blocks." + std::to_string(i) + ".resnets." + std::to_string(j) + ".");
        if (attn[i]) P(sd + ".1.", "down_blocks." + std::to_string(i) + ".attentions." + std::to_string(j) + ".");
      }
      for (int j = 0; j <= nrb; ++j) {
        std::string sd = "output_blocks." + std::to_string((nrb + 1) * i + j);
        P(sd + ".0.", "up_blocks." + std::to_string(i) + ".resnets." + std::to_string(j) + ".");
        if (attn[levels - 1 - i]) P(sd + ".1.", "up_blocks." + std::to_string(i) + ".attentions." + std::to_string(j) + ".");
      }
      if (i < levels - 1) {
        P("input_blocks." + std::to_string((nrb + 1) * (i + 1)) + ".0.op.", "down_blocks." + std::to_string(i) + ".downsamplers.0.conv.");
        P("output_blocks." + std::to_string((nrb + 1) * i + nrb) + "." + (attn[levels - 1 - i] ? "2" : "1") + ".",
          "up_blocks." + std::to_string(i) + ".upsamplers.0.");
      }
    }
    P("middle_block.0.", "mid_block.resnets.0.");
    P("middle_block.1.", "mid_block.attentions.0.");
    P("middle_block.2.", "mid_block.resnets.1.");
    P("label_emb.0.0.", "add_embedding.linear_1.");  // SDXL's vector input y
    P("label_emb.0.2.", "add_embedding.linear_2.");
    unet_resnet = {{"in_layers.0.", "norm1."},  {"in_layers.2.", "conv1."},  {"emb_layers.1.", "time_emb_proj."},
                   {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."}};

    auto V = [&](std::string sd, std::string hf) { vae_prefix.emplace_back(sd, hf); };
    for (int i = 0; i < vae_levels; ++i) {
      for (int j = 0; j < 3; ++j) {
        V("encoder.down." + std::to_string(i) + ".block." + std::to_string(j) + ".",
          "encoder.down_blocks." + std::to_string(i) + ".resnets." + std::to_string(j) + ".");
        V("decoder.up." + std::to_string(vae_levels - 1 - i) + ".block." + std::to_string(j) + ".",
          "decoder.up_blocks." + std::to_string(i) + ".resnets." + std::to_string(j) + ".");
      }
      V("encoder.down." + std::to_string(i) + ".downsample.", "encoder.down_blocks." + std::to_string(i) + ".downsamplers.0.");
      V("decoder.up." + std::to_string(vae_levels - 1 - i) + ".upsample.", "decoder.up_blocks." + std::to_string(i) + ".upsamplers.0.");
    }
    for (const char* side : {"encoder.", "decoder."}) {
      V(std::string(side) + "mid.block_1.", std::string(side) + "mid_block.resnets.0.");
      V(std::string(side) + "mid.block_2.", std::string(side) + "mid_block.resnets.1.");
      V(std::string(side) + "mid.attn_1.", std::string(side) + "mid_block.attentions.0.");
      V(std::string(side) + "norm_out.", std::string(side) + "conv_norm_out.");
    }
    if (old_vae_attention)
      vae_attn = {{"norm.", "group_norm."}, {"q.", "query."}, {"k.", "key."}, {"v.", "value."}, {"proj_out.", "proj_attn."}};
    else
      vae_attn = {{"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}};
  }

  static bool replace_prefix(std::string& s, const std::vector<std::pair<std::string, std::string>>& m, bool sd_to_hf = true) {
    for (auto& [sd, hf] : m) {
      const std::string& from = sd_to_hf ? sd : hf;
      if (s.rfind(from, 0) == 0) {
        s = (sd_to_hf ? hf : sd) + s.substr(from.size());
        return true;
      }
    }
    return false;
  }

  // Returns the diffusers key and whether the tensor must be stored as a linear [C,C].
  std::string unet(const std::string& sd_key) const {
    std::string k = sd_key;
    REQUIRE(replace_prefix(k, unet_prefix));
    if (k.find(".resnets.") != std::string::npos) {
      size_t at = k.find(".resnets.") + 9;
      at = k.find('.', at) + 1;  // after the resnet index
      std::string tail = k.substr(at);
      REQUIRE(replace_prefix(tail, unet_resnet));
      k = k.substr(0, at) + tail;
    }
    return k;
  }
  std::string vae(const std::string& sd_key, bool& to_linear) const {
    std::string k = sd_key;
    to_linear = false;
    if (k.rfind("quant_conv.", 0) == 0 || k.rfind("post_quant_conv.", 0) == 0) return k;
    if (!replace_prefix(k, vae_prefix)) return k;  // conv_in / conv_out are unchanged
    if (k.find(".resnets.") != std::string::npos) {
      size_t at = k.find("nin_shortcut.");
      if (at != std::string::npos) k.replace(at, 13, "conv_shortcut.");
    }
    size_t a = k.find("mid_block.attentions.0.");
    if (a != std::string::npos) {
      std::string head = k.substr(0, a + 23), tail = k.substr(a + 23);
      REQUIRE(replace_prefix(tail, vae_attn));
      to_linear = tail.find("norm") == std::string::npos && tail.size() > 6 && tail.substr(tail.size() - 6) == "weight";
      k = head + tail;
    }
    return k;
  }
};

// Writes the weights of `ck` as a diffusers folder's three safetensors files, the text encoder
// cut to its first `text_layers` layers (diffusers' SD 2.x conversion drops the unused last one);
// returns the original-name -> expected f32 data of what it wrote.
void write_diffusers_weights(const std::string& root, const Checkpoint& ck, bool old_vae_attention, bool fp16_text_encoder,
                             int text_layers, std::map<std::string, std::vector<float>>* expected) {
  const ModelConfig& c = ck.config();
  ReverseMap rm((int)c.unet.channel_mult.size(), c.unet.num_res_blocks, c.unet.attention_levels,
                (int)c.vae.ch_mult.size(), old_vae_attention);
  for (const char* dir : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}) fs::create_directories(fs::path(root) / dir);

  std::vector<WTensor> unet, vae, text;
  for (const auto& n : ck.tensor_names(kUNetPrefix)) {
    auto v = ck.read_f32(n);
    unet.push_back(f32_tensor(rm.unet(n.substr(std::strlen(kUNetPrefix))), ck.shape(n), v));
    (*expected)[n] = v;
  }
  for (const auto& n : ck.tensor_names(kVaePrefix)) {
    auto v = ck.read_f32(n);
    bool lin = false;
    std::string k = rm.vae(n.substr(std::strlen(kVaePrefix)), lin);
    Shape s = ck.shape(n);
    if (lin) s = {s[0], s[1]};
    vae.push_back(f32_tensor(k, s, v));
    (*expected)[n] = v;
  }
  for (const auto& n : ck.tensor_names(kClipPrefix)) {
    const std::string layers = std::string(kClipPrefix) + "encoder.layers.";
    if (n.rfind(layers, 0) == 0 && std::atoi(n.c_str() + layers.size()) >= text_layers) continue;
    auto v = ck.read_f32(n);
    std::string k = "text_model." + n.substr(std::strlen(kClipPrefix));
    text.push_back(fp16_text_encoder ? f16_tensor(k, ck.shape(n), v) : f32_tensor(k, ck.shape(n), v));
    (*expected)[n] = fp16_text_encoder ? test::round_to(DType::F16, v) : v;
  }
  WTensor pos{"text_model.embeddings.position_ids", "I64", {1, 77}, std::vector<uint8_t>(77 * 8, 0)};
  for (int i = 0; i < 77; ++i) pos.bytes[8 * i] = (uint8_t)i;
  text.push_back(pos);

  write_st(root + "/unet/diffusion_pytorch_model.safetensors", unet);
  write_st(root + "/vae/diffusion_pytorch_model.safetensors", vae);
  write_st(root + (fp16_text_encoder ? "/text_encoder/model.fp16.safetensors" : "/text_encoder/model.safetensors"), text);
  std::ofstream(root + "/tokenizer/vocab.json") << "{}";
  std::ofstream(root + "/tokenizer/merges.txt") << "#version: 0.2\n";
}

// Writes a diffusers folder for the tiny model; returns the original-name -> expected f32 data.
void build_diffusers(const std::string& root, bool old_vae_attention, bool fp16_text_encoder,
                     std::map<std::string, std::vector<float>>* expected) {
  Checkpoint ck = Checkpoint::open_with_config_text(tiny_model(), kTinyHeads);
  write_diffusers_weights(root, ck, old_vae_attention, fp16_text_encoder, ck.config().clip.layers, expected);
  std::ofstream(root + "/unet/config.json") << R"({"_class_name": "UNet2DConditionModel", "attention_head_dim": 2,
    "block_out_channels": [32, 64], "cross_attention_dim": 64, "in_channels": 4, "out_channels": 4,
    "layers_per_block": 2, "norm_eps": 1e-05, "norm_num_groups": 32, "use_linear_projection": false})";
  std::ofstream(root + "/vae/config.json") << R"({"_class_name": "AutoencoderKL", "block_out_channels": [32, 64],
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "scaling_factor": 0.18215})";
  std::ofstream(root + "/text_encoder/config.json") << R"({"architectures": ["CLIPTextModel"], "hidden_size": 64,
    "intermediate_size": 256, "num_attention_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 77,
    "vocab_size": 49408, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2})";
  std::ofstream(root + "/scheduler/scheduler_config.json") << R"({"_class_name": "PNDMScheduler", "beta_start": 0.00085,
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon"})";
  std::ofstream(root + "/model_index.json") << R"({"_class_name": "StableDiffusionPipeline"})";
}

// The sd2-tiny single file as diffusers' conversion writes an SD 2.x folder: the OpenCLIP tower as
// a CLIPTextModel with hidden_act gelu and without its last layer, per-level head COUNTS of a
// constant head width, linear projections, a v-prediction scheduler.
void build_sd2_diffusers(const std::string& root, std::map<std::string, std::vector<float>>* expected) {
  Checkpoint ck = Checkpoint::open(test::shared_dir() + "/vectors/sd2-tiny/model.safetensors");
  write_diffusers_weights(root, ck, false, false, ck.config().clip.used_layers(), expected);
  std::ofstream(root + "/unet/config.json") << R"({"_class_name": "UNet2DConditionModel", "attention_head_dim": [2, 4],
    "block_out_channels": [32, 64], "cross_attention_dim": 64, "in_channels": 4, "out_channels": 4, "sample_size": 16,
    "layers_per_block": 2, "norm_eps": 1e-05, "norm_num_groups": 32, "use_linear_projection": true})";
  std::ofstream(root + "/vae/config.json") << R"({"_class_name": "AutoencoderKL", "block_out_channels": [32, 64],
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "scaling_factor": 0.18215})";
  std::ofstream(root + "/text_encoder/config.json") << R"({"architectures": ["CLIPTextModel"], "hidden_size": 64,
    "intermediate_size": 256, "num_attention_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 77,
    "vocab_size": 49408, "hidden_act": "gelu", "layer_norm_eps": 1e-05, "bos_token_id": 0, "eos_token_id": 2})";
  std::ofstream(root + "/scheduler/scheduler_config.json") << R"({"_class_name": "DDIMScheduler", "beta_start": 0.00085,
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "v_prediction"})";
  std::ofstream(root + "/model_index.json") << R"({"_class_name": "StableDiffusionPipeline"})";
}

// The sdxl-tiny single file as diffusers writes an SDXL folder: unet/ (add_embedding = label_emb),
// vae/, text_encoder/ (CLIP ViT-L, CLIPTextModel) and text_encoder_2/ (bigG as
// CLIPTextModelWithProjection: HF names, text_projection as a Linear weight [proj, width]).
void build_sdxl_diffusers(const std::string& root) {
  Checkpoint ck = vksd::test::sdxl_tiny::sdxl_checkpoint();
  std::map<std::string, std::vector<float>> unused;
  write_diffusers_weights(root, ck, false, false, 0, &unused);
  const ModelConfig& c = ck.config();
  const char* dirs[] = {"text_encoder", "text_encoder_2"};
  for (size_t e = 0; e < c.text_encoder_count(); ++e) {
    const ClipConfig& enc = c.text_encoder(e);
    fs::create_directories(fs::path(root) / dirs[e]);
    std::vector<WTensor> text;
    for (const auto& n : ck.tensor_names(enc.prefix)) {
      const std::vector<float> v = ck.read_f32(n);
      if (n == enc.prefix + "text_projection") {
        const Shape& sh = ck.shape(n);  // [width, proj] -> Linear weight [proj, width]
        std::vector<float> t(v.size());
        for (int64_t i = 0; i < sh[0]; ++i)
          for (int64_t o = 0; o < sh[1]; ++o) t[(size_t)(o * sh[0] + i)] = v[(size_t)(i * sh[1] + o)];
        text.push_back(f32_tensor("text_projection.weight", {sh[1], sh[0]}, t));
      } else {
        text.push_back(f32_tensor("text_model." + n.substr(enc.prefix.size()), ck.shape(n), v));
      }
    }
    write_st(root + "/" + dirs[e] + "/model.safetensors", text);
    std::ofstream(root + "/" + dirs[e] + "/config.json")
        << "{\"hidden_act\": \"" << (enc.quick_gelu ? "quick_gelu" : "gelu") << "\", \"num_attention_heads\": " << enc.heads
        << "}";
  }
  std::ofstream(root + "/model_index.json") << R"({"_class_name": "StableDiffusionXLPipeline"})";
}

}  // namespace

TEST_CASE("checkpoint: an SDXL diffusers folder (text_encoder + text_encoder_2) generates what the single file does") {
  REQUIRE_SHARED();
  TempDir d;
  build_sdxl_diffusers(d.path.string());
  const Checkpoint single = vksd::test::sdxl_tiny::sdxl_checkpoint();
  const Checkpoint folder = Checkpoint::open_with_config_text(d.path.string(), vksd::test::sdxl_tiny::config_json());
  CHECK(folder.format() == CheckpointFormat::Diffusers);
  CHECK(folder.config().family == ModelFamily::SDXL);
  REQUIRE(folder.config().text_encoder_count() == 2);
  // Every tensor the single file gives, the folder gives too, with the same values (the bigG
  // projection transposed back, fused q/k/v as separate rows).
  CHECK(folder.tensor_names() == single.tensor_names());
  for (const auto& n : single.tensor_names()) {
    CAPTURE(n);
    CHECK(folder.shape(n) == single.shape(n));
    if (n.find("text_projection") != std::string::npos || n.find("self_attn.v_proj.weight") != std::string::npos)
      CHECK(folder.read_f32(n) == single.read_f32(n));
  }
  // The whole run: identical latents and images.
  PipelineOptions o = vksd::test::sdxl_tiny::pipeline_options();
  GenerateParams p;
  p.prompt = "a photograph of an astronaut riding a horse";
  p.width = p.height = 32;
  p.steps = 2;
  p.cfg_scale = 7.5;
  p.sampler = SamplerKind::Euler;
  p.seed = 3;
  SdPipeline a(test::ctx(), o);
  const GenerateResult ra = a.generate(p);
  o.model_path = d.path.string();
  SdPipeline b(test::ctx(), o);
  const GenerateResult rb = b.generate(p);
  CHECK(ra.latent == rb.latent);
  CHECK(ra.image.pixels == rb.image.pixels);
  CHECK(test::ctx().validation_messages() == 0);
}

TEST_CASE("checkpoint: a diffusers folder loads to the same tensors under original names") {
  REQUIRE_SHARED();
  Checkpoint single = Checkpoint::open_with_config_text(tiny_model(), kTinyHeads);
  for (bool old_attn : {true, false}) {
    CAPTURE(old_attn);
    TempDir d;
    std::map<std::string, std::vector<float>> expected;
    build_diffusers(d.path.string(), old_attn, /*fp16_text_encoder=*/old_attn, &expected);
    Checkpoint ck = Checkpoint::open(d.path.string());  // heads come from the config.json files
    CHECK(ck.format() == CheckpointFormat::Diffusers);
    CHECK(ck.tensor_names() == single.tensor_names());
    for (const auto& n : single.tensor_names()) {
      CAPTURE(n);
      REQUIRE(ck.has(n));
      CHECK(ck.shape(n) == single.shape(n));
      CHECK(ck.read_f32(n) == expected.at(n));
    }
    CHECK(ck.dtype(std::string(kClipPrefix) + "final_layer_norm.weight") == (old_attn ? StDType::F16 : StDType::F32));
    const ModelConfig &a = ck.config(), &b = single.config();
    CHECK(a.unet.num_heads == 2);
    CHECK(a.clip.heads == 2);
    CHECK(a.unet.channel_mult == b.unet.channel_mult);
    CHECK(a.unet.attention_levels == b.unet.attention_levels);
    CHECK(a.unet.num_res_blocks == b.unet.num_res_blocks);
    CHECK(a.unet.context_dim == b.unet.context_dim);
    CHECK(a.vae.ch_mult == b.vae.ch_mult);
    CHECK(a.vae.scale_factor == b.vae.scale_factor);
    CHECK(a.clip.layers == b.clip.layers);
    CHECK(a.schedule.beta_end == b.schedule.beta_end);
    CHECK(ck.tokenizer_vocab() == d / "tokenizer/vocab.json");
    CHECK(ck.tokenizer_merges() == d / "tokenizer/merges.txt");
    CHECK(ck.ignored().size() == 1);  // position_ids
  }
}

TEST_CASE("checkpoint: an SD 2.x diffusers folder (OpenCLIP as CLIPTextModel, gelu) loads as SD 2.x") {
  REQUIRE_SHARED();
  TempDir d;
  std::map<std::string, std::vector<float>> expected;
  build_sd2_diffusers(d.path.string(), &expected);
  Checkpoint ck = Checkpoint::open(d.path.string());
  const ModelConfig& c = ck.config();
  CHECK(c.family == ModelFamily::SD2);
  CHECK(ck.config_sources().front() == "SD 2.x defaults + tensor shapes");
  CHECK(ck.tensor_names().size() == expected.size());
  for (const auto& [n, v] : expected) {
    CAPTURE(n);
    REQUIRE(ck.has(n));
    CHECK(ck.read_f32(n) == v);
  }
  CHECK(c.clip.layers == 2);            // stored already cut to the penultimate layer
  CHECK(c.clip.skip_last_layers == 0);
  CHECK_FALSE(c.clip.quick_gelu);
  CHECK(c.clip.pad_token == 0);
  CHECK(c.unet.num_head_channels == 16);  // [2, 4] heads over [32, 64] channels
  CHECK(c.unet.use_linear_in_transformer);
  CHECK(c.schedule.prediction_type == "v_prediction");
  CHECK(c.sample_size == 32);             // unet sample_size 16 x the VAE's factor 2

  // Its text encoder (2 stored layers, no skip) gives the reference SD 2.x conditioning.
  auto weights = load_weights(test::ctx(), ck, kClipPrefix, DType::F32);
  auto tokens = test::load_npy(test::shared_dir() + "/vectors/sd2-tiny/tokens.npy");
  nn::TextEncoder te(test::ctx(), *weights, c.clip, (int)tokens.shape[0]);
  auto hidden = te.encode(std::vector<int32_t>(tokens.data.begin(), tokens.data.end()));
  const double e = test::rel_l2(hidden, test::load_npy(test::shared_dir() + "/vectors/sd2-tiny/text_hidden.npy").data);
  MESSAGE("diffusers SD 2.x text encoder vs text_hidden: rel L2 " << e);
  CHECK(e <= 1e-5);
  CHECK(test::ctx().validation_messages() == 0);

  // A model_index.json of another family is refused by name before any tensor is read.
  std::ofstream(d / "model_index.json") << R"({"_class_name": "StableDiffusionXLPipeline"})";
  CHECK(contains(error_of([&] { Checkpoint::open(d.path.string()); }), "an SDXL pipeline"));
}

TEST_CASE("checkpoint: a wrong diffusers folder fails loudly") {
  REQUIRE_SHARED();
  TempDir d;
  std::map<std::string, std::vector<float>> expected;
  build_diffusers(d.path.string(), false, false, &expected);
  const std::string unet_file = d / "unet/diffusion_pytorch_model.safetensors";
  auto unet = read_all(unet_file);

  SUBCASE("a key with no original counterpart") {
    auto ts = unet;
    ts.push_back(f32_tensor("down_blocks.0.resnets.0.mystery.weight", {1}, {1}));
    write_st(unet_file, ts);
    std::string e = error_of([&] { Checkpoint::open(d.path.string()); });
    CHECK(contains(e, "no counterpart"));
    CHECK(contains(e, "down_blocks.0.resnets.0.mystery.weight"));
  }
  SUBCASE("a missing key") {
    auto ts = unet;
    ts.erase(std::find_if(ts.begin(), ts.end(), [](auto& t) { return t.name == "up_blocks.1.attentions.2.proj_out.bias"; }));
    write_st(unet_file, ts);
    std::string e = error_of([&] { Checkpoint::open(d.path.string()); });
    CHECK(contains(e, "missing 1"));
    CHECK(contains(e, "model.diffusion_model.output_blocks.5.1.proj_out.bias"));
  }
  SUBCASE("config.json disagreeing with the tensors") {
    std::ofstream(d / "unet/config.json") << R"({"attention_head_dim": 2, "cross_attention_dim": 768})";
    CHECK(contains(error_of([&] { Checkpoint::open(d.path.string()); }), "cross_attention_dim = 768 but the tensors say 64"));
  }
  SUBCASE("missing component") {
    fs::remove_all(d.path / "vae");
    CHECK(contains(error_of([&] { Checkpoint::open(d.path.string()); }), "needs unet/, vae/ and text_encoder/"));
  }
  SUBCASE("pickle weights only") {
    fs::rename(d / "text_encoder/model.safetensors", d / "text_encoder/model.bin");
    CHECK(contains(error_of([&] { Checkpoint::open(d.path.string()); }), "only unsharded .safetensors"));
  }
}

// ---- upload -------------------------------------------------------------------------------------

TEST_CASE("checkpoint: load_weights uploads one network at a time, f32 exact and f16 rounded") {
  REQUIRE_SHARED();
  Context& c = test::ctx();
  Checkpoint ck = Checkpoint::open_with_config_text(tiny_model(), kTinyHeads);
  for (DType dt : {DType::F32, DType::F16}) {
    CAPTURE(dtype_name(dt));
    auto unet = load_weights(c, ck, kUNetPrefix, dt);
    CHECK(unet->names() == ck.tensor_names(kUNetPrefix));
    CHECK(unet->storage() == dt);
    for (const char* n : {"model.diffusion_model.input_blocks.0.0.weight",
                          "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj.weight"}) {
      const DeviceTensor& t = unet->get(n, ck.shape(n));
      CHECK(t.dtype == dt);
      CHECK(download(c, t) == test::round_to(dt, ck.read_f32(n)));
    }
  }
  auto vae = load_weights(c, ck, kVaePrefix, DType::F32);
  auto text = load_weights(c, ck, kClipPrefix, DType::F16);
  CHECK(vae->names().size() + text->names().size() + ck.tensor_names(kUNetPrefix).size() == ck.tensor_names().size());
  CHECK(contains(error_of([&] { load_weights(c, ck, "nonexistent.", DType::F32); }), "no network tensors"));
  CHECK(c.validation_messages() == 0);
}

// ---- vksd info ------------------------------------------------------------------------------------

TEST_CASE("vksd info: prints the architecture, parameter counts and memory, exit 1 on bad input") {
  const std::string vksd = test::vksd_binary();
  REQUIRE_MESSAGE(!vksd.empty(), "the vksd binary was not built");
  auto run = [](const std::string& args, int& rc) {
    auto r = test::run_vksd("info " + args);
    REQUIRE_MESSAGE(r.code >= 0, "vksd info did not run or did not exit normally:\n" << r.out);
    rc = r.code;
    return r.out;
  };
  int rc = 0;
  std::string out = run(tiny_model(), rc);
  CHECK(rc == 0);
  CHECK(contains(out, "single-file safetensors"));
  CHECK(contains(out, "model_channels 32, channel_mult [1, 2], num_res_blocks 2"));
  CHECK(contains(out, "heads 2"));
  CHECK(contains(out, "1577828"));  // UNet parameters, as model.json counts them
  CHECK(contains(out, "843847"));
  CHECK(contains(out, "3267136"));
  CHECK(contains(out, "F32: 626 tensors"));
  CHECK(contains(out, "fp16 MiB"));

  TempDir d;
  std::ofstream(d / "junk.safetensors") << "this is not a safetensors file at all";
  out = run(d / "junk.safetensors", rc);
  CHECK(rc == 1);
  CHECK(contains(out, "junk.safetensors"));
  // No MODEL means the demo model now (tests/test_cli_spellings.cpp); an unknown flag is usage.
  out = run("--bogus", rc);
  CHECK(rc == 1);
  CHECK(contains(out, "usage"));
}

// ---- real SD 1.5 sizes (sparse files: headers real, data never read) ------------------------------

namespace {

// A safetensors file whose header lists `specs` in `dtype`; the data area is a hole (sparse).
void write_sparse(const std::string& path, const std::vector<TensorSpec>& specs, const std::string& dtype) {
  const uint64_t es = dtype == "F16" ? 2 : 4;
  std::string h = "{";
  uint64_t off = 0;
  for (const auto& s : specs) {
    uint64_t b = (uint64_t)shape_numel(s.shape) * es;
    h += std::string(off ? "," : "") + "\"" + s.name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape_json(s.shape) +
         ",\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + b) + "]}";
    off += b;
  }
  write_raw(path, h + "}", {});
  fs::resize_file(path, 8 + (h.size() + 1) + off);
}

std::vector<TensorSpec> strip_prefix(const std::vector<TensorSpec>& v, const char* prefix) {
  std::vector<TensorSpec> r;
  for (auto s : v) {
    s.name = s.name.substr(std::strlen(prefix));
    r.push_back(s);
  }
  return r;
}

}  // namespace

TEST_CASE("checkpoint: SD 1.5 sized files infer the SD 1.5 architecture, counts are the published ones") {
  const ModelConfig sd15;  // the defaults are SD 1.5
  // Published parameter counts of SD 1.x: UNet 859,520,964, VAE 83,653,863, CLIP ViT-L/14 text 123,060,480.
  CHECK(parameter_count(unet_layout(sd15.unet)) == 859520964);
  CHECK(parameter_count(vae_layout(sd15.vae)) == 83653863);
  CHECK(parameter_count(clip_layout(sd15.clip)) == 123060480);

  TempDir d;
  for (int in_ch : {4, 9}) {  // txt2img and inpainting UNets
    CAPTURE(in_ch);
    ModelConfig want = sd15;
    want.unet.in_channels = in_ch;
    auto specs = sd1_layout(want);
    specs.push_back({"model_ema.decay", {}});  // bookkeeping that real files carry
    // betas, not alphas_cumprod: the sparse file's zeros would be refused as a schedule, rightly.
    specs.push_back({"betas", {1000}});
    std::string p = d / ("sd15_" + std::to_string(in_ch) + ".safetensors");
    write_sparse(p, specs, "F16");
    Checkpoint ck = Checkpoint::open(p);
    const ModelConfig& c = ck.config();
    CHECK(c.unet.in_channels == in_ch);
    CHECK(c.unet.out_channels == 4);
    CHECK(c.unet.model_channels == 320);
    CHECK(c.unet.channel_mult == std::vector<int>{1, 2, 4, 4});
    CHECK(c.unet.attention_levels == std::vector<bool>{true, true, true, false});
    CHECK(c.unet.num_res_blocks == 2);
    CHECK(c.unet.transformer_depth == 1);
    CHECK(c.unet.context_dim == 768);
    CHECK(c.unet.num_heads == 8);
    CHECK_FALSE(c.unet.use_linear_in_transformer);
    CHECK(c.vae.ch == 128);
    CHECK(c.vae.ch_mult == std::vector<int>{1, 2, 4, 4});
    CHECK(c.vae.z_channels == 4);
    CHECK(c.vae.embed_dim == 4);
    CHECK(c.clip.width == 768);
    CHECK(c.clip.layers == 12);
    CHECK(c.clip.heads == 12);
    CHECK(c.clip.mlp_dim == 3072);
    CHECK(c.clip.max_length == 77);
    CHECK(c.clip.vocab_size == 49408);
    CHECK(ck.dtype("model.diffusion_model.out.2.weight") == StDType::F16);
    CHECK(ck.ignored().size() == 2);
  }

  // The same model as a diffusers folder (its deepest level has no attention, so the upsampler of
  // up_blocks.0 sits at index 1 and the others at index 2).
  auto specs = sd1_layout(sd15);
  ReverseMap rm(4, 2, sd15.unet.attention_levels, 4, false);
  std::vector<TensorSpec> unet, vae, text;
  for (auto s : unet_layout(sd15.unet)) unet.push_back({rm.unet(s.name.substr(std::strlen(kUNetPrefix))), s.shape});
  for (auto s : vae_layout(sd15.vae)) {
    bool lin = false;
    std::string k = rm.vae(s.name.substr(std::strlen(kVaePrefix)), lin);
    vae.push_back({k, lin ? Shape{s.shape[0], s.shape[1]} : s.shape});
  }
  for (auto s : strip_prefix(clip_layout(sd15.clip), "cond_stage_model.transformer.")) text.push_back(s);
  for (const char* dir : {"unet", "vae", "text_encoder"}) fs::create_directories(d.path / "diff" / dir);
  write_sparse(d / "diff/unet/diffusion_pytorch_model.fp16.safetensors", unet, "F16");
  write_sparse(d / "diff/vae/diffusion_pytorch_model.fp16.safetensors", vae, "F16");
  write_sparse(d / "diff/text_encoder/model.fp16.safetensors", text, "F16");
  Checkpoint ck = Checkpoint::open(d / "diff");
  CHECK(ck.format() == CheckpointFormat::Diffusers);
  REQUIRE(ck.tensor_names().size() == specs.size());
  for (const auto& s : specs) {
    CAPTURE(s.name);
    REQUIRE(ck.has(s.name));
    CHECK(ck.shape(s.name) == s.shape);
  }
  CHECK(ck.config().unet.channel_mult == std::vector<int>{1, 2, 4, 4});
  CHECK(ck.config().unet.attention_levels == std::vector<bool>{true, true, true, false});
}

TEST_CASE("checkpoint: sample_size must be a multiple of the model's downsampling (SD 1.5: 64)") {
  TempDir d;
  write_sparse(d / "sd15.safetensors", sd1_layout(ModelConfig{}), "F16");
  CHECK(Checkpoint::open_with_config_text(d / "sd15.safetensors", R"({"sample_size": 768})").config().sample_size == 768);
  // 520 is a multiple of 8 (what the config parser asks of any model) but not of SD 1.5's
  // VAE x8 times UNet x8 = 64.
  std::string e = error_of([&] { Checkpoint::open_with_config_text(d / "sd15.safetensors", R"({"sample_size": 520})"); });
  CHECK(contains(e, "sample_size 520 is not a multiple of 64"));
}

// ---- LoRA keys (runtime/model/lora.h) ----------------------------------------------------------

namespace {

// A rank-1 LoRA for EVERY linear / conv weight of the UNet and the text encoder's layers, named
// from the original names through this file's independent ReverseMap: kohya keys with the
// diffusers module path ('.' -> '_'), kohya keys with the LDM path, and PEFT keys. Binding it to
// `ck` must send each layer to exactly the weight it was named after.
void check_lora_reaches_every_weight(const Checkpoint& ck, const ReverseMap& rm, const std::string& dir) {
  struct Want {
    std::string key, target;
    Shape down, up;
  };
  std::vector<Want> want;
  auto flat = [](std::string x) {
    std::replace(x.begin(), x.end(), '.', '_');
    return x;
  };
  auto drop_weight = [](const std::string& x) { return x.substr(0, x.size() - std::strlen(".weight")); };
  for (const auto& n : ck.tensor_names()) {
    const Shape& s = ck.shape(n);
    if ((s.size() != 2 && s.size() != 4) || n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) continue;
    const Shape down = s.size() == 4 ? Shape{1, s[1], s[2], s[3]} : Shape{1, s[1]};
    const Shape up = s.size() == 4 ? Shape{s[0], 1, 1, 1} : Shape{s[0], 1};
    if (n.rfind(kUNetPrefix, 0) == 0) {
      const std::string ldm = drop_weight(n.substr(std::strlen(kUNetPrefix)));
      const std::string hf = drop_weight(rm.unet(n.substr(std::strlen(kUNetPrefix))));
      want.push_back({"lora_unet_" + flat(hf), n, down, up});
      want.push_back({"lora_unet_" + flat(ldm), n, down, up});
      want.push_back({"unet." + hf, n, down, up});
    } else if (n.rfind(kClipPrefix, 0) == 0 && n.find(".encoder.layers.") != std::string::npos) {
      const std::string hf = "text_model." + drop_weight(n.substr(std::strlen(kClipPrefix)));
      want.push_back({"lora_te_" + flat(hf), n, down, up});
      want.push_back({"text_encoder." + hf, n, down, up});
    }
  }
  REQUIRE(want.size() > 100);
  for (int part = 0; part < 3; ++part) {  // kohya diffusers paths | kohya LDM paths + text | PEFT
    std::vector<StOutTensor> ts;
    std::map<std::string, std::string> expect;  // key -> target
    for (const Want& w : want) {
      const bool kohya = w.key.rfind("lora_", 0) == 0;
      const bool ldm_name = w.key.find("lora_unet_") == 0 && w.key.find("blocks_") != std::string::npos &&
                            (w.key.find("input_blocks_") != std::string::npos || w.key.find("output_blocks_") != std::string::npos ||
                             w.key.find("middle_block_") != std::string::npos);
      const int which = !kohya ? 2 : (w.key.rfind("lora_te_", 0) == 0 || ldm_name) ? 1 : 0;
      if (which != part) continue;
      if (expect.count(w.key)) continue;  // names without blocks (conv_in, out_2, time_embed_0) appear once per form
      expect[w.key] = w.target;
      ts.push_back({w.key + (kohya ? ".lora_down.weight" : ".lora_A.weight"), DType::F32, w.down});
      ts.push_back({w.key + (kohya ? ".lora_up.weight" : ".lora_B.weight"), DType::F32, w.up});
    }
    CAPTURE(part);
    const std::string path = dir + "/lora" + std::to_string(part) + ".safetensors";
    write_safetensors(path, ts, [](size_t, std::vector<float>& out) { std::fill(out.begin(), out.end(), 0.f); });
    BoundLora b(std::make_shared<LoraFile>(path), ck);
    size_t layers = 0;
    for (const auto& [target, ls] : b.targets())
      for (const LoraLayer* l : ls) {
        ++layers;
        INFO(l->key);
        CHECK(expect.at(l->key) == target);
      }
    CHECK(layers == expect.size());
  }
}

}  // namespace

TEST_CASE("lora: every SD 1.5 UNet and text-encoder weight is reached by its kohya (diffusers and LDM path) and PEFT names") {
  TempDir d;
  const ModelConfig sd15;
  const std::string p = d / "sd15.safetensors";
  write_sparse(p, sd1_layout(sd15), "F16");
  const Checkpoint ck = Checkpoint::open(p);
  const ReverseMap rm(4, 2, {true, true, true, false}, 4, false);
  check_lora_reaches_every_weight(ck, rm, d.path.string());
}

TEST_CASE("lora: the same LoRA keys reach the same weights of a diffusers folder as of the single file") {
  REQUIRE_SHARED();
  TempDir d;
  std::map<std::string, std::vector<float>> expected;
  build_diffusers((d.path / "folder").string(), false, false, &expected);
  const Checkpoint folder = Checkpoint::open((d.path / "folder").string());
  const Checkpoint single = Checkpoint::open_with_config_text(tiny_model(), kTinyHeads);
  const ModelConfig& c = single.config();
  const ReverseMap rm((int)c.unet.channel_mult.size(), c.unet.num_res_blocks, c.unet.attention_levels,
                      (int)c.vae.ch_mult.size(), false);
  check_lora_reaches_every_weight(folder, rm, d.path.string());
  check_lora_reaches_every_weight(single, rm, d.path.string());
}
