// LoRA: random LoRAs (kohya and diffusers/PEFT keys, linear, 1x1 and LoCon 3x3 conv layers,
// UNet and text encoder) for the tiny reference checkpoint. The truth is computed here in
// double from the checkpoint's own weights: W' = W + w * (alpha / rank) * (B . A).
//   - the weights uploaded equal W' (and every other tensor is the base, untouched);
//   - a pipeline with the LoRA gives bit-identical text conditioning, UNet outputs and images
//     to a pipeline on a checkpoint FILE holding W' (fp32);
//   - switching the LoRA off or changing its weight gives bit-exactly what a fresh pipeline gives;
//   - <lora:NAME:w> in the prompt equals GenerateParams::loras / --lora FILE:w;
//   - unmatched keys, other families, misshaped tensors are refused naming the key.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>

#include "runtime/diffusion/pipeline.h"
#include "runtime/gpu/memory.h"
#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/lora.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/safetensors_writer.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "runtime/text/lora_tags.h"
#include "runtime/text/prompt.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace vksd;

namespace {

std::string tiny_model() { return test::vectors_dir() + "/model.safetensors"; }
std::string vocab() { return test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz"; }

struct TempDir {
  fs::path dir = fs::temp_directory_path() / ("vksd_lora_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(dir); }
  ~TempDir() { fs::remove_all(dir); }
  std::string operator/(const std::string& f) const { return (dir / f).string(); }
};

// One LoRA layer of the test: its module key in each format and the weight it changes.
struct Layer {
  std::string kohya, peft, target;  // target: original name without ".weight"
  int64_t rank;
  double alpha;                     // <= 0: none stored (alpha = rank)
  bool locon = false;               // 3x3 down, 1x1 up
};

const std::string U = kUNetPrefix, T = kClipPrefix;
// kohya names: diffusers module paths with '_' (the usual form), one LDM-path name.
const std::vector<Layer> kLayers = {
    {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
     "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", U + "input_blocks.1.1.transformer_blocks.0.attn1.to_q", 4, 2.0},
    {"lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k",
     "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k", U + "middle_block.1.transformer_blocks.0.attn2.to_k", 2, -1},
    {"lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_ff_net_0_proj",
     "unet.up_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj", U + "output_blocks.0.1.transformer_blocks.0.ff.net.0.proj", 8, 4.0},
    {"lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn1_to_out_0",
     "unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0", U + "output_blocks.5.1.transformer_blocks.0.attn1.to_out.0", 4, 1.0},
    {"lora_unet_input_blocks_4_1_proj_in",  // LDM-path kohya name; 1x1 conv
     "unet.down_blocks.1.attentions.0.proj_in", U + "input_blocks.4.1.proj_in", 4, 3.0},
    {"lora_unet_down_blocks_0_resnets_0_conv1",  // LoCon 3x3
     "unet.down_blocks.0.resnets.0.conv1", U + "input_blocks.1.0.in_layers.2", 4, 2.0, true},
    {"lora_unet_up_blocks_0_resnets_2_conv1",  // LoCon 3x3, in != out
     "unet.up_blocks.0.resnets.2.conv1", U + "output_blocks.2.0.in_layers.2", 2, -1, true},
    {"lora_unet_up_blocks_0_resnets_2_time_emb_proj",
     "unet.up_blocks.0.resnets.2.time_emb_proj", U + "output_blocks.2.0.emb_layers.1", 4, 4.0},
    {"lora_unet_up_blocks_0_resnets_2_conv_shortcut",  // 1x1 conv, in != out
     "unet.up_blocks.0.resnets.2.conv_shortcut", U + "output_blocks.2.0.skip_connection", 4, 2.0},
    {"lora_unet_down_blocks_0_downsamplers_0_conv",  // LoCon 3x3, stride 2
     "unet.down_blocks.0.downsamplers.0.conv", U + "input_blocks.3.0.op", 2, 1.0, true},
    {"lora_unet_up_blocks_0_upsamplers_0_conv",  // LoCon 3x3 after an attention: output_blocks.N.2
     "unet.up_blocks.0.upsamplers.0.conv", U + "output_blocks.2.2.conv", 4, 8.0, true},
    {"lora_te_text_model_encoder_layers_0_self_attn_q_proj",
     "text_encoder.text_model.encoder.layers.0.self_attn.q_proj", T + "encoder.layers.0.self_attn.q_proj", 4, 2.0},
    {"lora_te_text_model_encoder_layers_1_mlp_fc1",
     "text_encoder.text_model.encoder.layers.1.mlp.fc1", T + "encoder.layers.1.mlp.fc1", 8, -1},
};

// Random A and B for each layer, shaped for the checkpoint's weight.
struct LayerData {
  Shape down, up;
  std::vector<float> a, b;
};

std::vector<LayerData> make_data(const Checkpoint& ck, uint64_t seed) {
  std::vector<LayerData> r;
  for (size_t i = 0; i < kLayers.size(); ++i) {
    const Layer& l = kLayers[i];
    const Shape& w = ck.shape(l.target + ".weight");
    LayerData d;
    const int64_t k = w.size() == 4 ? (l.locon ? w[2] : 1) : 0;
    d.down = w.size() == 4 ? Shape{l.rank, w[1], k, k} : Shape{l.rank, w[1]};
    d.up = w.size() == 4 ? Shape{w[0], l.rank, 1, 1} : Shape{w[0], l.rank};
    d.a = test::randn((size_t)shape_numel(d.down), seed + 2 * i, 0.3f);
    d.b = test::randn((size_t)shape_numel(d.up), seed + 2 * i + 1, 0.3f);
    r.push_back(d);
  }
  return r;
}

enum class Format { Kohya, Peft };

// Writes the LoRA; `extra` adds tensors (name, shape) filled with 0.1 (for refusal tests).
void write_lora(const std::string& path, Format fmt, const std::vector<LayerData>& data,
                const std::vector<std::pair<std::string, Shape>>& extra = {}) {
  std::vector<StOutTensor> ts;
  std::vector<std::vector<float>> values;
  for (size_t i = 0; i < kLayers.size(); ++i) {
    const Layer& l = kLayers[i];
    if (fmt == Format::Kohya) {
      ts.push_back({l.kohya + ".lora_down.weight", DType::F32, data[i].down});
      values.push_back(data[i].a);
      ts.push_back({l.kohya + ".lora_up.weight", DType::F32, data[i].up});
      values.push_back(data[i].b);
      if (l.alpha > 0) {
        ts.push_back({l.kohya + ".alpha", DType::F32, {}});
        values.push_back({(float)l.alpha});
      }
    } else {
      ts.push_back({l.peft + ".lora_A.weight", DType::F32, data[i].down});
      values.push_back(data[i].a);
      ts.push_back({l.peft + ".lora_B.weight", DType::F32, data[i].up});
      values.push_back(data[i].b);
    }
  }
  for (const auto& [name, shape] : extra) {
    ts.push_back({name, DType::F32, shape});
    values.push_back(std::vector<float>((size_t)shape_numel(shape), 0.1f));
  }
  write_safetensors(path, ts, [&](size_t i, std::vector<float>& out) { out = values[i]; });
}

// The truth: W + w * (alpha / rank) * (B . A) per target, in double, rounded once.
std::map<std::string, std::vector<float>> merged_weights(const Checkpoint& ck, Format fmt, const std::vector<LayerData>& data,
                                                         double weight) {
  std::map<std::string, std::vector<float>> r;
  for (size_t i = 0; i < kLayers.size(); ++i) {
    const Layer& l = kLayers[i];
    const std::string name = l.target + ".weight";
    const std::vector<float> w = ck.read_f32(name);
    const int64_t out = ck.shape(name)[0], in = (int64_t)w.size() / out, rank = l.rank;
    const double alpha = fmt == Format::Kohya && l.alpha > 0 ? l.alpha : (double)rank;
    std::vector<float> m(w.size());
    for (int64_t o = 0; o < out; ++o)
      for (int64_t c = 0; c < in; ++c) {
        double ba = 0;
        for (int64_t k = 0; k < rank; ++k) ba += (double)data[i].b[o * rank + k] * data[i].a[k * in + c];
        m[o * in + c] = (float)((double)w[o * in + c] + weight * (alpha / rank) * ba);
      }
    r[name] = m;
  }
  return r;
}

// A copy of the tiny checkpoint (and its model.json) with `replace`d weights.
void write_checkpoint(const std::string& path, const std::map<std::string, std::vector<float>>& replace) {
  SafetensorsFile src(tiny_model());
  std::vector<StOutTensor> ts;
  std::vector<const StTensor*> from;
  for (const StTensor& t : src.tensors()) {
    if (t.dtype != StDType::F32) continue;  // bookkeeping integers (none that matter)
    ts.push_back({t.name, DType::F32, t.shape});
    from.push_back(&t);
  }
  write_safetensors(path, ts, [&](size_t i, std::vector<float>& out) {
    auto it = replace.find(from[i]->name);
    out = it != replace.end() ? it->second : src.to_f32(*from[i]);
  });
  fs::copy_file(test::vectors_dir() + "/model.json", fs::path(path).replace_extension(".json"),
                fs::copy_options::overwrite_existing);
}

PipelineOptions options(const std::string& model, const std::string& lora_dir = "") {
  PipelineOptions o;
  o.model_path = model;
  o.vocab_path = vocab();
  o.fp32 = true;
  o.lora_dir = lora_dir;
  return o;
}

GenerateParams params(const std::string& prompt) {
  GenerateParams p;
  p.prompt = prompt;
  p.negative_prompt = "blurry";
  p.width = p.height = 32;
  p.steps = 2;
  p.cfg_scale = 5;
  p.sampler = SamplerKind::Euler;
  p.seed = 7;
  return p;
}

// What the tests compare: the conditioning, every UNet output, and the image.
struct Outputs : Observer {
  std::vector<float> cond, uncond;
  std::vector<std::vector<float>> eps;
  GenerateResult res;
  void on_text(const TextEvent& e) override { cond = *e.cond, uncond = *e.uncond; }
  void on_step(const StepEvent& e) override {
    eps.push_back(*e.eps_cond);
    eps.push_back(*e.eps_uncond);
  }
};

Outputs run(SdPipeline& pipe, const GenerateParams& p) {
  Outputs o;
  o.res = pipe.generate(p, &o);
  return o;
}

void check_same(const Outputs& a, const Outputs& b) {
  CHECK(a.cond == b.cond);
  CHECK(a.uncond == b.uncond);
  CHECK(a.eps == b.eps);
  CHECK(a.res.latent == b.res.latent);
  CHECK(a.res.image.pixels == b.res.image.pixels);
}

}  // namespace

TEST_CASE("lora: kohya and PEFT keys map to the checkpoint's weights, and the uploaded weights are W + w (alpha/rank) B.A") {
  REQUIRE_SHARED();
  TempDir tmp;
  const Checkpoint ck = Checkpoint::open(tiny_model());
  const auto data = make_data(ck, 100);
  for (Format fmt : {Format::Kohya, Format::Peft}) {
    const std::string path = tmp / (fmt == Format::Kohya ? "k.safetensors" : "p.safetensors");
    write_lora(path, fmt, data);
    auto file = std::make_shared<LoraFile>(path);
    CHECK(file->format() == (fmt == Format::Kohya ? "kohya" : "diffusers/PEFT"));
    auto bound = std::make_shared<BoundLora>(file, ck);
    // Every layer found its own target, and nothing else.
    std::set<std::string> expect;
    for (const Layer& l : kLayers) expect.insert(l.target + ".weight");
    std::set<std::string> got;
    for (const auto& [t, ls] : bound->targets()) {
      got.insert(t);
      CHECK(ls.size() == 1);
    }
    CHECK(got == expect);

    const double w = 0.7;
    const auto truth = merged_weights(ck, fmt, data, w);
    std::vector<ActiveLora> active = {{bound, w}};
    for (const char* prefix : {kUNetPrefix, kClipPrefix}) {
      auto ws = load_weights(test::ctx(), ck, prefix, DType::F32,
                             [&](const std::string& n, const Shape& s, std::vector<float>& d) { apply_loras(active, n, s, d); });
      int changed = 0;
      for (const std::string& n : ws->names()) {
        const std::vector<float> dev = download(test::ctx(), ws->get(n));
        auto it = truth.find(n);
        INFO(n);
        if (it != truth.end()) {
          CHECK(dev == it->second);
          CHECK(dev != ck.read_f32(n));  // the LoRA did change it
          ++changed;
        } else {
          CHECK(dev == ck.read_f32(n));
        }
      }
      CHECK(changed == (int)lora_targets(active, prefix).size());
    }
  }
}

TEST_CASE("lora: UNet and text encoder outputs equal a checkpoint file with the merged weights, off restores the base bit-exactly") {
  REQUIRE_SHARED();
  TempDir tmp;
  const Checkpoint ck = Checkpoint::open(tiny_model());
  const auto data = make_data(ck, 200);
  const std::string lora = tmp / "style.safetensors";
  write_lora(lora, Format::Kohya, data);
  const std::string merged1 = tmp / "merged1.safetensors", merged05 = tmp / "merged05.safetensors";
  write_checkpoint(merged1, merged_weights(ck, Format::Kohya, data, 1.0));
  write_checkpoint(merged05, merged_weights(ck, Format::Kohya, data, 0.5));

  SdPipeline pipe(test::ctx(), options(tiny_model(), tmp.dir.string()));
  const GenerateParams base = params("a red house by the sea");
  GenerateParams with = base;
  with.loras = {{lora, 1.0}};
  GenerateParams half = base;
  half.loras = {{lora, 0.5}};

  const Outputs o_base = run(pipe, base);
  const Outputs o_with = run(pipe, with);
  const Outputs o_half = run(pipe, half);  // weight change: re-merged from the file
  const Outputs o_off = run(pipe, base);   // off: the base, read again from the file

  SdPipeline m1(test::ctx(), options(merged1));
  SdPipeline m05(test::ctx(), options(merged05));
  SUBCASE("LoRA at 1 == merged file") { check_same(o_with, run(m1, base)); }
  SUBCASE("LoRA at 0.5 after 1 == merged file at 0.5") { check_same(o_half, run(m05, base)); }
  SUBCASE("off again == base") { check_same(o_off, o_base); }
  SUBCASE("the LoRA changes both networks") {
    CHECK(o_with.cond != o_base.cond);
    CHECK(o_with.eps[0] != o_base.eps[0]);
    CHECK(o_with.res.image.pixels != o_base.res.image.pixels);
  }
  SUBCASE("lowvram reloads networks with the LoRA merged") {
    PipelineOptions o = options(tiny_model());
    o.lowvram = true;
    SdPipeline low(test::ctx(), o);
    check_same(run(low, with), o_with);
    check_same(run(low, base), o_base);
  }
}

TEST_CASE("lora: <lora:NAME:w> in the prompt == GenerateParams::loras, and the parameters record A1111 Lora hashes") {
  REQUIRE_SHARED();
  TempDir tmp;
  const Checkpoint ck = Checkpoint::open(tiny_model());
  const std::string lora = tmp / "ink.safetensors";
  write_lora(lora, Format::Peft, make_data(ck, 300));
  SdPipeline pipe(test::ctx(), options(tiny_model(), tmp.dir.string()));

  GenerateParams by_tag = params("a red <lora:ink:0.5>house by the sea");
  GenerateParams by_flag = params("a red house by the sea");
  by_flag.loras = {{lora, 0.5}};
  const Outputs a = run(pipe, by_tag), b = run(pipe, by_flag);
  check_same(a, b);

  // The hash: SHA-256 over the bytes after the safetensors header, first 12 hex digits.
  SafetensorsFile f(lora);
  uint64_t header = 0;
  {
    FILE* fp = std::fopen(lora.c_str(), "rb");
    REQUIRE(fp);
    uint8_t len[8];
    REQUIRE(std::fread(len, 1, 8, fp) == 8);
    std::fclose(fp);
    for (int i = 7; i >= 0; --i) header = (header << 8) | len[i];
  }
  const std::string cmd = "tail -c +" + std::to_string(8 + header + 1) + " " + test::shell_quote(lora) + " | sha256sum";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[80] = {};
  REQUIRE(std::fgets(buf, sizeof buf, p));
  pclose(p);
  const std::string hash = std::string(buf).substr(0, 12);
  CHECK(lora_short_hash(lora) == hash);
  CHECK(a.res.parameters.find(", Lora hashes: \"ink: " + hash + "\"") != std::string::npos);
  CHECK(a.res.parameters.rfind("a red <lora:ink:0.5>house by the sea\n", 0) == 0);  // prompt kept as written

  // The tag is not text: the prompt without it, and no LoRA, is the base.
  SdPipeline fresh(test::ctx(), options(tiny_model()));
  CHECK(run(fresh, params("a red house by the sea")).cond != a.cond);
  CHECK(fresh.tokenize("a red <lora:ink:0.5>house by the sea").ids == fresh.tokenize("a red house by the sea").ids);

  SUBCASE("tag syntax") {
    auto t = extract_lora_tags("x <lora:a:0.25> y <lora:b> z");
    CHECK(t.text == "x  y  z");
    REQUIRE(t.loras.size() == 2);
    CHECK(t.loras[0].name == "a");
    CHECK(t.loras[0].weight == 0.25);
    CHECK(t.loras[1].name == "b");
    CHECK(t.loras[1].weight == 1.0);
    CHECK_THROWS_WITH_AS(extract_lora_tags("x <lora:a:heavy>"), doctest::Contains("'heavy' is not a number"), Error);
    CHECK_THROWS_WITH_AS(extract_lora_tags("x <lora:a:0.5"), doctest::Contains("unclosed"), Error);
    CHECK_THROWS_WITH_AS(extract_lora_tags("<lora::1>"), doctest::Contains("names no LoRA"), Error);
  }
  SUBCASE("a missing name or folder is an error before any work") {
    CHECK_THROWS_WITH_AS(pipe.check_params(params("a <lora:nope:1>")), doctest::Contains("no nope.safetensors in"), Error);
    CHECK_THROWS_WITH_AS(fresh.check_params(params("a <lora:ink:1>")), doctest::Contains("--lora-dir"), Error);
    GenerateParams q = params("a");
    q.loras = {{tmp / "missing.safetensors", 1}};
    CHECK_THROWS_WITH_AS(pipe.check_params(q), doctest::Contains("LoRA file not found"), Error);
  }
}

TEST_CASE("lora: unmatched keys, other model families and misshaped tensors are refused, naming the key") {
  REQUIRE_SHARED();
  TempDir tmp;
  const Checkpoint ck = Checkpoint::open(tiny_model());
  const auto data = make_data(ck, 400);
  auto refuse = [&](const std::vector<std::pair<std::string, Shape>>& extra, const std::string& expect) {
    const std::string path = tmp / "bad.safetensors";
    write_lora(path, Format::Kohya, data, extra);
    INFO("expect: " << expect);
    CHECK_THROWS_WITH_AS(BoundLora(std::make_shared<LoraFile>(path), ck), doctest::Contains(expect.c_str()), Error);
  };
  // A layer the tiny UNet does not have (depth 1: no transformer_blocks.1).
  const std::string deep = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_1_attn1_to_q";
  refuse({{deep + ".lora_down.weight", {4, 32}}, {deep + ".lora_up.weight", {32, 4}}},
         "1 of 14 LoRA layers match no layer of this model");
  refuse({{deep + ".lora_down.weight", {4, 32}}, {deep + ".lora_up.weight", {32, 4}}}, deep);
  // SDXL: two text encoders.
  refuse({{"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", {4, 64}}}, "SDXL");
  // Shapes made for a wider context (SDXL's 2048) do not fit attn2.to_k [64, 64].
  const std::string tok = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v";
  refuse({{tok + ".lora_down.weight", {4, 2048}}, {tok + ".lora_up.weight", {64, 4}}}, "'" + tok + "' (up [64,4], down [4,2048]) does not fit");
  // Misshaped: the rank disagrees; an up without a down; a non-scalar alpha; LoHa.
  const std::string q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q";
  refuse({{q + ".lora_down.weight", {4, 32}}, {q + ".lora_up.weight", {32, 3}}}, "disagree on the rank");
  refuse({{q + ".lora_up.weight", {32, 4}}}, "'" + q + "' has an up tensor but no down tensor");
  refuse({{q + ".lora_down.weight", {4, 32}}, {q + ".lora_up.weight", {32, 4}}, {q + ".alpha", {2}}}, "'" + q + ".alpha' (alpha) has shape [2]");
  refuse({{q + ".lora_down.weight", {4, 32, 3}}, {q + ".lora_up.weight", {32, 4}}}, "has shape [4,32,3], expected [rank, in]");
  refuse({{q + ".hada_w1_a", {4, 32}}}, "LoHa");
  refuse({{"lora_unet_foo.weight", {4}}}, "'lora_unet_foo.weight' is not a LoRA tensor");
}

TEST_CASE("lora: vksd generate --lora FILE:W == <lora:NAME:W> with --lora-dir, PNG parameters, and vksd info on a LoRA") {
  REQUIRE_SHARED();
  REQUIRE_MESSAGE(!test::vksd_binary().empty(), "the vksd binary was not built");
  TempDir tmp;
  const Checkpoint ck = Checkpoint::open(tiny_model());
  const std::string lora = tmp / "toon.safetensors";
  write_lora(lora, Format::Kohya, make_data(ck, 500));
  const std::string base = "generate -m " + test::shell_quote(tiny_model()) + " --vocab " + test::shell_quote(vocab()) +
                           " -W 32 -H 32 --steps 2 --sampler euler --seed 3 --fp32 ";
  const std::string out1 = tmp / "flag.png", out2 = tmp / "tag.png", out0 = tmp / "none.png";
  auto r1 = test::run_vksd(base + "-p 'a cat' --lora " + test::shell_quote(lora + ":0.6") + " -o " + test::shell_quote(out1));
  INFO(r1.out);
  REQUIRE(r1.code == 0);
  auto r2 = test::run_vksd(base + "-p 'a cat <lora:toon:0.6>' --lora-dir " + test::shell_quote(tmp.dir.string()) + " -o " +
                           test::shell_quote(out2));
  INFO(r2.out);
  REQUIRE(r2.code == 0);
  auto r0 = test::run_vksd(base + "-p 'a cat' -o " + test::shell_quote(out0));
  REQUIRE(r0.code == 0);
  CHECK(read_image(out1, 3).pixels == read_image(out2, 3).pixels);
  CHECK(read_image(out1, 3).pixels != read_image(out0, 3).pixels);
  const std::string params1 = read_png_text(out1)[0].second, params2 = read_png_text(out2)[0].second;
  const std::string hashes = ", Lora hashes: \"toon: " + lora_short_hash(lora) + "\"";
  CHECK(params1.find(hashes) != std::string::npos);
  CHECK(params2.find(hashes) != std::string::npos);
  CHECK(params2.rfind("a cat <lora:toon:0.6>\n", 0) == 0);

  // Refusals: a missing file, a weight that is not a number, a tag without --lora-dir.
  auto bad = test::run_vksd(base + "-p x --lora " + test::shell_quote(tmp / "nope.safetensors:1") + " -o " + test::shell_quote(tmp / "x.png"));
  CHECK(bad.code != 0);
  CHECK(bad.out.find("file not found") != std::string::npos);
  auto bad2 = test::run_vksd(base + "-p x --lora " + test::shell_quote(lora + ":strong") + " -o " + test::shell_quote(tmp / "x.png"));
  CHECK(bad2.code != 0);
  CHECK(bad2.out.find("wants a number") != std::string::npos);
  auto bad3 = test::run_vksd(base + "-p 'x <lora:toon>' -o " + test::shell_quote(tmp / "x.png"));
  CHECK(bad3.code != 0);
  CHECK(bad3.out.find("--lora-dir") != std::string::npos);
  CHECK(!fs::exists(tmp / "x.png"));

  auto info = test::run_vksd("info " + test::shell_quote(lora));
  INFO(info.out);
  CHECK(info.code == 0);
  CHECK(info.out.find("format     kohya LoRA") != std::string::npos);
  CHECK(info.out.find("layers     13: 11 UNet, 2 text encoder; 4 conv layers") != std::string::npos);
  CHECK(info.out.find("rank       2 .. 8") != std::string::npos);
  CHECK(info.out.find("alpha      1 .. 8 (3 layers store none: alpha = rank)") != std::string::npos);
}

TEST_CASE("lora: on an SD 2.x checkpoint, text-encoder layers reach q/k/v sliced from OpenCLIP's fused in_proj, and the linear proj_in") {
  REQUIRE_SHARED();
  TempDir tmp;
  const Checkpoint ck = Checkpoint::open(test::shared_dir() + "/vectors/sd2-tiny/model.safetensors");
  struct L {
    std::string key, target;
  };
  const std::vector<L> ls = {
      {"lora_te_text_model_encoder_layers_0_self_attn_k_proj", T + "encoder.layers.0.self_attn.k_proj.weight"},
      {"lora_te_text_model_encoder_layers_1_mlp_fc2", T + "encoder.layers.1.mlp.fc2.weight"},
      {"lora_unet_down_blocks_0_attentions_0_proj_in", U + "input_blocks.1.1.proj_in.weight"},  // [C, C] linear in SD 2.x
  };
  const int64_t rank = 4;
  const double alpha = 2.0, weight = 0.9;
  std::vector<StOutTensor> ts;
  std::vector<std::vector<float>> values;
  std::map<std::string, std::vector<float>> truth;
  for (size_t i = 0; i < ls.size(); ++i) {
    const Shape& w = ck.shape(ls[i].target);
    REQUIRE(w.size() == 2);
    const auto a = test::randn((size_t)(rank * w[1]), 900 + 2 * i, 0.3f), b = test::randn((size_t)(w[0] * rank), 901 + 2 * i, 0.3f);
    ts.push_back({ls[i].key + ".lora_down.weight", DType::F32, {rank, w[1]}});
    values.push_back(a);
    ts.push_back({ls[i].key + ".lora_up.weight", DType::F32, {w[0], rank}});
    values.push_back(b);
    ts.push_back({ls[i].key + ".alpha", DType::F32, {}});
    values.push_back({(float)alpha});
    const std::vector<float> base = ck.read_f32(ls[i].target);
    std::vector<float> m(base.size());
    for (int64_t o = 0; o < w[0]; ++o)
      for (int64_t c = 0; c < w[1]; ++c) {
        double ba = 0;
        for (int64_t k = 0; k < rank; ++k) ba += (double)b[o * rank + k] * a[k * w[1] + c];
        m[o * w[1] + c] = (float)((double)base[o * w[1] + c] + weight * (alpha / rank) * ba);
      }
    truth[ls[i].target] = m;
  }
  const std::string path = tmp / "sd2.safetensors";
  write_safetensors(path, ts, [&](size_t i, std::vector<float>& out) { out = values[i]; });
  auto bound = std::make_shared<BoundLora>(std::make_shared<LoraFile>(path), ck);
  REQUIRE(bound->targets().size() == ls.size());
  std::vector<ActiveLora> active = {{bound, weight}};
  for (const char* prefix : {kUNetPrefix, kClipPrefix}) {
    auto ws = load_weights(test::ctx(), ck, prefix, DType::F32,
                           [&](const std::string& n, const Shape& s, std::vector<float>& d) { apply_loras(active, n, s, d); });
    for (const auto& [name, want] : truth)
      if (name.rfind(prefix, 0) == 0) {
        INFO(name);
        CHECK(download(test::ctx(), ws->get(name)) == want);
      }
    // The other slices of the fused tensor (q, v) are untouched.
    if (std::string(prefix) == kClipPrefix)
      for (const char* n : {"encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0.self_attn.v_proj.weight"})
        CHECK(download(test::ctx(), ws->get(T + n)) == ck.read_f32(T + n));
  }
}
