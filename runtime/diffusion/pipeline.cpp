#include "runtime/diffusion/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "runtime/model/checkpoint.h"
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/diffusion/finite_check.h"
#include "runtime/gpu/graph.h"
#include "runtime/io/infotext.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/nn/unet.h"
#include "runtime/nn/vae.h"
#include "runtime/nn/vae_tiled.h"
#include "runtime/text/lora_tags.h"
#include "runtime/text/prompt.h"
#include "runtime/diffusion/rng.h"
#include "runtime/diffusion/schedule.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/text/tokenizer.h"
#include "runtime/model/weights.h"

namespace vksd {

using Clock = std::chrono::steady_clock;
static double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The LoRA state of one resident weight store: which files (with weights) are merged into it
// and which of its tensors differ from the checkpoint because of them.
struct LoraMerged {
  std::vector<LoraRef> applied;
  std::set<std::string> tensors;
};

// The networks and their weights; each piece is created on first use and dropped by release.
struct SdPipeline::Nets {
  std::unique_ptr<WeightStore> clip_w, unet_w, vae_w;
  LoraMerged clip_lora, unet_lora;
  std::unique_ptr<nn::TextEncoder> text;
  std::unique_ptr<nn::UNet> unet;
  int unet_batch = 0, unet_h = 0, unet_w_ = 0, unet_ctx = 0;
  bool unet_maps = false;  // built with NetOptions::attention_maps
  bool unet_profile = false;  // built with NetOptions::profile
  // Untiled = one tile spanning the whole latent (the plain VaeDecoder/VaeEncoder graph).
  std::unique_ptr<nn::TiledVaeDecoder> dec;
  int dec_h = 0, dec_w = 0;
  std::unique_ptr<nn::TiledVaeEncoder> enc;
  int enc_h = 0, enc_w = 0;

  void release_text() { text.reset(), clip_w.reset(), clip_lora = {}; }
  void release_unet() { unet.reset(), unet_w.reset(), unet_batch = 0, unet_lora = {}; }
  void release_vae() { dec.reset(), enc.reset(), vae_w.reset(), dec_h = enc_h = 0; }
};

SdPipeline::SdPipeline(Context& ctx, const PipelineOptions& opts) : ctx_(ctx), opts_(opts), nets_(std::make_unique<Nets>()) {
  if (opts.model_path.empty()) fail("no model given");
  if (opts.vae_tile < 1 || opts.vae_tile_overlap < 0 || opts.vae_tile_overlap >= opts.vae_tile)
    fail("VAE tile size " + std::to_string(opts.vae_tile) + " and overlap " + std::to_string(opts.vae_tile_overlap) +
         " (latent pixels) must satisfy tile >= 1 and 0 <= overlap < tile");
  ckpt_ = std::make_unique<Checkpoint>(opts.config_json.empty()
                                           ? Checkpoint::open(opts.model_path, opts.config_path)
                                           : Checkpoint::open_with_config_text(opts.model_path, opts.config_json));
  if (!opts.prediction.empty()) ckpt_->set_prediction_type(opts.prediction, "--prediction " + opts.prediction);
  model_name_ = ckpt_->config().name;
  // --vocab, then the vocabulary the model config names, then a diffusers folder's tokenizer/,
  // then find_vocabulary's search beside the model and VKSD_VOCAB.
  const std::string& config_vocab = ckpt_->config().tokenizer_vocab;
  tok_ = std::make_unique<Tokenizer>(Tokenizer::load(
      !ckpt_->tokenizer_vocab().empty() && opts.vocab_path.empty() && config_vocab.empty()
          ? ckpt_->tokenizer_vocab()
          : find_vocabulary(opts.model_path, opts.vocab_path, config_vocab)));
  schedule_ = std::make_unique<NoiseSchedule>(ckpt_->config().schedule, ckpt_->alphas_cumprod());
  dtype_ = opts.fp32 ? DType::F32 : ctx.compute_dtype();
}

SdPipeline::~SdPipeline() = default;

// ---- LoRA -----------------------------------------------------------------------------------

// The files of `loras` that change tensors under `prefix`, with their weights.
static std::vector<LoraRef> loras_touching(const std::vector<ActiveLora>& loras, const std::string& prefix) {
  std::vector<LoraRef> r;
  for (const ActiveLora& a : loras)
    if (a.lora->touches(prefix)) r.push_back({a.lora->file().path(), a.weight});
  return r;
}

// Upload one network's weights with the merged LoRA set.
static std::unique_ptr<WeightStore> load_merged(Context& ctx, const Checkpoint& ck, const std::string& prefix, DType dtype,
                                                const std::vector<ActiveLora>& loras, LoraMerged& state) {
  auto ws = load_weights(ctx, ck, prefix, dtype, [&](const std::string& name, const Shape& shape, std::vector<float>& data) {
    apply_loras(loras, name, shape, data);
  });
  state.applied = loras_touching(loras, prefix);
  state.tensors = lora_targets(loras, prefix);
  return ws;
}

// A resident store brought to the new set: every tensor the old or the new set changes is read
// again from the checkpoint (the exact base) and gets the new deltas.
static void remerge(const Checkpoint& ck, const std::string& prefix, WeightStore& ws, const std::vector<ActiveLora>& loras,
                    LoraMerged& state) {
  std::vector<LoraRef> applied = loras_touching(loras, prefix);
  if (applied == state.applied) return;
  std::set<std::string> now = lora_targets(loras, prefix);
  std::set<std::string> todo = state.tensors;
  todo.insert(now.begin(), now.end());
  for (const std::string& name : todo) {
    std::vector<float> data = ck.read_f32(name);
    apply_loras(loras, name, ck.shape(name), data);
    ws.replace(name, data.data());
  }
  state.applied = std::move(applied);
  state.tensors = std::move(now);
}

std::vector<LoraRef> SdPipeline::resolve_loras(const GenerateParams& p) const {
  namespace fs = std::filesystem;
  std::vector<LoraRef> r;
  for (const LoraRef& l : p.loras) {
    if (!fs::is_regular_file(l.path)) fail("LoRA file not found: " + l.path);
    if (!std::isfinite(l.weight)) fail("LoRA " + l.path + ": the weight must be a finite number");
    r.push_back(l);
  }
  for (const LoraTag& t : extract_lora_tags(p.prompt).loras) {
    if (opts_.lora_dir.empty())
      fail("prompt: <lora:" + t.name + "> needs a LoRA folder to find " + t.name + ".safetensors in (--lora-dir)");
    fs::path f = fs::path(opts_.lora_dir) / t.name;
    if (f.extension() != ".safetensors") f += ".safetensors";
    if (!fs::is_regular_file(f)) fail("prompt: <lora:" + t.name + "> : no " + f.filename().string() + " in " + opts_.lora_dir);
    r.push_back({f.string(), t.weight});
  }
  return r;
}

void SdPipeline::set_loras(const std::vector<LoraRef>& loras) {
  std::vector<ActiveLora> active;
  for (const LoraRef& l : loras) {
    auto& bound = lora_cache_[l.path];
    if (!bound) {
      try {
        bound = std::make_shared<BoundLora>(std::make_shared<LoraFile>(l.path), *ckpt_);
      } catch (...) {
        lora_cache_.erase(l.path);
        throw;
      }
    }
    active.push_back({bound, l.weight});
  }
  loras_ = std::move(active);
  if (nets_->clip_w) remerge(*ckpt_, kClipPrefix, *nets_->clip_w, loras_, nets_->clip_lora);
  if (nets_->unet_w) remerge(*ckpt_, kUNetPrefix, *nets_->unet_w, loras_, nets_->unet_lora);
}

const ModelConfig& SdPipeline::config() const { return ckpt_->config(); }

std::unique_ptr<Sampler> SdPipeline::make_sampler(const GenerateParams& p) const {
  const ScheduleConfig& sc = config().schedule;
  TimestepSpacing spacing = p.spacing;
  // The model's own choice applies only where the sampler has one to replace (Karras and LCM
  // choose their steps themselves); an explicit request is checked by Sampler::create.
  if (spacing == TimestepSpacing::Default && p.sampler != SamplerKind::DpmPP2MKarras && p.sampler != SamplerKind::LCM)
    spacing = parse_timestep_spacing(sc.timestep_spacing);
  return Sampler::create(p.sampler, *schedule_, p.steps, p.eta, spacing, sc.steps_offset);
}

const Tokenizer& SdPipeline::tokenizer() const { return *tok_; }

WeightedPrompt SdPipeline::tokenize(const std::string& prompt_with_loras, int pad_chunks) const {
  ChunkOptions o;
  o.pad_id = config().clip.pad_token;  // SD 1.x: the end token; SD 2.x (OpenCLIP): 0
  auto wp = tokenize_weighted(*tok_, extract_lora_tags(prompt_with_loras).text, o);
  if (pad_chunks > wp.chunk_count) pad_to_chunks(wp, pad_chunks, *tok_, o.pad_id);
  return wp;
}

void SdPipeline::release_all() {
  nets_->release_text();
  nets_->release_unet();
  nets_->release_vae();
}

void SdPipeline::stage(Observer* o, const char* name) const {
  if (o) o->on_stage(name);
}

int SdPipeline::size_multiple() const {
  const auto& c = config();
  return c.vae.downsample_factor() * (1 << (int)(c.unet.channel_mult.size() - 1));
}

static std::string fmt_g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

std::string SdPipeline::parameters_text(const GenerateParams& p) const {
  // A1111's names and order (modules/processing.py create_infotext); format_infotext quotes
  // values and drops any key A1111 would not understand.
  std::call_once(model_hash_once_, [&] { model_hash_ = a1111_model_hash(ckpt_->path()); });
  Infotext info;
  info.prompt = p.prompt;
  info.negative_prompt = p.negative_prompt;
  auto add = [&](const char* k, std::string v) { info.params.emplace_back(k, std::move(v)); };
  add("Steps", std::to_string(p.steps));
  add("Sampler", sampler_a1111_name(p.sampler));
  add("CFG scale", fmt_g(p.cfg_scale));
  add("Seed", std::to_string(p.seed));
  add("Size", std::to_string(p.width) + "x" + std::to_string(p.height));
  if (!model_hash_.empty()) add("Model hash", model_hash_);
  add("Model", model_name_);
  if (p.init_image) add("Denoising strength", fmt_g(p.strength));
  if (p.clip_skip != 1) add("Clip skip", std::to_string(p.clip_skip));
  // A1111 keeps DDIM's eta apart from the ancestral samplers' eta.
  if (p.eta >= 0) add(p.sampler == SamplerKind::DDIM ? "Eta DDIM" : "Eta", fmt_g(p.eta));
  add("RNG", "CPU");  // the noise is PyTorch's CPU generator, as A1111's RNG: CPU setting
  // As A1111: "Lora hashes" lists each LoRA's name and short hash (":" and "," removed from
  // names); format_infotext quotes it, since the value holds ": " and ", ".
  std::string hashes;
  for (const LoraRef& l : resolve_loras(p)) {
    std::string name = std::filesystem::path(l.path).stem().string();
    std::erase(name, ':'), std::erase(name, ',');
    std::string hash;
    {
      std::lock_guard<std::mutex> lock(lora_hash_mutex_);
      std::string& h = lora_hashes_[l.path];
      if (h.empty()) h = lora_short_hash(l.path);
      hash = h;
    }
    hashes += (hashes.empty() ? "" : ", ") + name + ": " + hash;
  }
  if (!hashes.empty()) add("Lora hashes", hashes);
  return format_infotext(info);
}

void SdPipeline::check_params(const GenerateParams& p) const {
  const int m = size_multiple();
  if (p.width <= 0 || p.height <= 0 || p.width % m || p.height % m)
    fail("width and height must be positive multiples of " + std::to_string(m) + " for this model (got " +
         std::to_string(p.width) + "x" + std::to_string(p.height) + ")");
  if (p.steps < 1) fail("steps must be >= 1 (got " + std::to_string(p.steps) + ")");
  resolve_loras(p);  // tag syntax, files present
  if (!(p.cfg_scale >= 0) || !std::isfinite(p.cfg_scale)) fail("cfg scale must be >= 0 (got " + fmt_g(p.cfg_scale) + ")");
  for (const std::string* s : {&p.prompt, &p.negative_prompt})
    if (s->size() > kMaxPromptBytes)
      fail(std::string(s == &p.prompt ? "prompt" : "negative prompt") + " is " + std::to_string(s->size()) +
           " bytes; the maximum is " + std::to_string(kMaxPromptBytes) + " (about 6,000 words)");
  if (p.cfg_scale > kMaxCfgScale)
    fail("cfg scale " + fmt_g(p.cfg_scale) + " is beyond the maximum of " + fmt_g(kMaxCfgScale) +
         " (usual values are 5-9; huge ones overflow to NaN)");
  if (!std::isfinite(p.eta) || p.eta > kMaxEta)
    fail("eta " + fmt_g(p.eta) + " is beyond the maximum of " + fmt_g(kMaxEta) + " (0 = deterministic, 1 = full ancestral noise)");
  if (!(p.strength >= 0 && p.strength <= 1)) fail("strength must be within [0, 1] (got " + fmt_g(p.strength) + ")");
  const int layers = config().clip.used_layers();
  if (p.clip_skip < 1 || p.clip_skip > layers)
    fail("clip skip must be within [1, " + std::to_string(layers) + "] (got " + std::to_string(p.clip_skip) + ")");
  if (p.init_image) {
    const auto& im = *p.init_image;
    if (im.channels != 3) fail("init image must be RGB");
    if (im.width != p.width || im.height != p.height)
      fail("init image is " + std::to_string(im.width) + "x" + std::to_string(im.height) + " but the requested size is " +
           std::to_string(p.width) + "x" + std::to_string(p.height));
  }
  if (p.mask) {
    if (!p.init_image) fail("a mask needs an init image (the picture to inpaint)");
    if (p.mask->channels != 1) fail("mask must be a grayscale image");
    if (p.mask->width != p.width || p.mask->height != p.height)
      fail("mask is " + std::to_string(p.mask->width) + "x" + std::to_string(p.mask->height) + " but the image is " +
           std::to_string(p.width) + "x" + std::to_string(p.height));
  }
  if (config().unet.in_channels == 9 && !p.mask)
    fail("this is an inpainting model (9-channel UNet): it needs an init image and a mask");
  if (config().unet.in_channels != 4 && config().unet.in_channels != 9)
    fail("unsupported UNet input channels " + std::to_string(config().unet.in_channels));
  auto sampler = make_sampler(p);  // sampler-specific limits
  if (p.start_latent) {
    const int f = config().vae.downsample_factor();
    const size_t n = (size_t)config().vae.embed_dim * (p.height / f) * (p.width / f);
    if (p.start_latent->size() != n)
      fail("start latent has " + std::to_string(p.start_latent->size()) + " values, the image's latent " + std::to_string(n));
    if (p.start_step < 1 || p.start_step >= sampler->steps())
      fail("start step must be within [1, " + std::to_string(sampler->steps() - 1) + "] (got " + std::to_string(p.start_step) + ")");
    if (p.init_image) fail("a run resumed from a latent takes no init image");
  }
}

// ---- text -----------------------------------------------------------------------------------

std::vector<float> SdPipeline::encode_prompt(const std::string& prompt, int clip_skip, int pad_chunks) {
  const auto& cc = config().clip;
  const WeightedPrompt wp = tokenize(prompt, pad_chunks);
  if (!nets_->text) {
    if (!nets_->clip_w) nets_->clip_w = load_merged(ctx_, *ckpt_, kClipPrefix, dtype_, loras_, nets_->clip_lora);
    nets_->text = std::make_unique<nn::TextEncoder>(ctx_, *nets_->clip_w, cc, 1);
  }
  const size_t L = WeightedPrompt::kChunkLength, D = (size_t)cc.width;
  std::vector<float> out;
  out.reserve(wp.chunk_count * L * D);
  for (int c = 0; c < wp.chunk_count; ++c) {
    std::vector<int32_t> ids(wp.chunk_ids(c), wp.chunk_ids(c) + L);
    auto z = nets_->text->encode(ids, clip_skip);
    if (z.size() != L * D) fail("text encoder returned " + std::to_string(z.size()) + " values, expected 77 x width");
    // A1111 "Original" emphasis: scale each token's hidden state by its weight, then restore the
    // mean of the whole chunk so the overall magnitude the UNet sees is unchanged.
    const float* w = wp.chunk_weights(c);
    bool emphasis = false;
    for (size_t i = 0; i < L; ++i) emphasis = emphasis || w[i] != 1.0f;
    if (emphasis) {
      double before = 0, after = 0;
      for (float v : z) before += v;
      for (size_t i = 0; i < L; ++i)
        for (size_t d = 0; d < D; ++d) z[i * D + d] *= w[i];
      for (float v : z) after += v;
      const float k = (float)((before / z.size()) / (after / z.size()));
      for (float& v : z) v *= k;
    }
    out.insert(out.end(), z.begin(), z.end());
  }
  return out;
}

// ---- VAE ------------------------------------------------------------------------------------

bool SdPipeline::vae_tiled(int width, int height) const {
  using T = PipelineOptions::VaeTiling;
  const int f = config().vae.downsample_factor();
  const int64_t latent_pixels = (int64_t)(height / f) * (width / f);
  const bool larger = height / f > opts_.vae_tile || width / f > opts_.vae_tile;
  switch (opts_.vae_tiling) {
    case T::Off: return false;
    case T::On: return larger;
    case T::Auto: return opts_.lowvram && latent_pixels > (int64_t)opts_.vae_tile * opts_.vae_tile;
  }
  return false;
}

// The tile geometry for a latent of h x w: the configured tiles, or one tile spanning it.
static nn::VaeTiles vae_tiles(bool tiled, const PipelineOptions& o, int h, int w) {
  if (tiled) return {o.vae_tile, o.vae_tile_overlap};
  return {std::max(h, w), 0};
}

std::vector<float> SdPipeline::decode_latent(const std::vector<float>& latent, int lh, int lw) {
  const auto& vc = config().vae;
  if (latent.size() != (size_t)vc.embed_dim * lh * lw) fail("decode_latent: latent size does not match its geometry");
  if (!nets_->vae_w) nets_->vae_w = load_weights(ctx_, *ckpt_, kVaePrefix, dtype_);
  if (!nets_->dec || nets_->dec_h != lh || nets_->dec_w != lw) {
    nets_->dec.reset();
    const int f = vc.downsample_factor();
    nets_->dec = std::make_unique<nn::TiledVaeDecoder>(ctx_, *nets_->vae_w, vc, 1, lh, lw,
                                                       vae_tiles(vae_tiled(lw * f, lh * f), opts_, lh, lw));
    nets_->dec_h = lh, nets_->dec_w = lw;
  }
  std::vector<float> z(latent.size());
  for (size_t i = 0; i < z.size(); ++i) z[i] = latent[i] / vc.scale_factor;
  return nets_->dec->decode(z);
}

std::vector<float> SdPipeline::encode_image(const std::vector<float>& image, int h, int w) {
  const auto& vc = config().vae;
  if (image.size() != (size_t)vc.in_channels * h * w) fail("encode_image: image size does not match its geometry");
  if (!nets_->vae_w) nets_->vae_w = load_weights(ctx_, *ckpt_, kVaePrefix, dtype_);
  if (!nets_->enc || nets_->enc_h != h || nets_->enc_w != w) {
    nets_->enc.reset();
    const int f = vc.downsample_factor();
    nets_->enc = std::make_unique<nn::TiledVaeEncoder>(ctx_, *nets_->vae_w, vc, 1, h, w,
                                                       vae_tiles(vae_tiled(w, h), opts_, h / f, w / f));
    nets_->enc_h = h, nets_->enc_w = w;
  }
  auto post = nets_->enc->encode(image);
  // The posterior mean (its mode), not a sample: img2img stays deterministic given the seed.
  for (auto& v : post.mean) v *= vc.scale_factor;
  return post.mean;
}

// ---- generation -----------------------------------------------------------------------------

GenerateResult SdPipeline::generate(const GenerateParams& p, Observer* obs) {
  check_params(p);
  require_memory_budget(memory_estimate(p), memory_budget_bytes(ctx_, opts_.memory_budget_mb), opts_.lowvram,
                        vae_tiled(p.width, p.height));
  const auto t_start = Clock::now();
  set_loras(resolve_loras(p));
  const std::string prompt = extract_lora_tags(p.prompt).text;
  const ModelConfig& cfg = config();
  const int f = cfg.vae.downsample_factor();
  const int lh = p.height / f, lw = p.width / f, lc = cfg.vae.embed_dim;
  const size_t n = (size_t)lc * lh * lw;
  const bool cfg_on = p.cfg_scale != 1.0;
  GenerateResult res;
  res.seed = p.seed;
  res.parameters = parameters_text(p);

  // 1. Text: cond and uncond padded to the same number of 77-token chunks.
  stage(obs, "encode prompt");
  auto t0 = Clock::now();
  std::vector<float> cond, uncond;
  {
    const int cc = tokenize_weighted(*tok_, prompt).chunk_count;
    const int uc = cfg_on ? tokenize_weighted(*tok_, p.negative_prompt).chunk_count : 0;
    const int chunks = std::max(cc, uc);
    // Longer than one 75-token window: say so (nothing is cut; the chunks are concatenated).
    if (chunks > 1) {
      const std::string note = "prompt longer than 75 tokens: encoded as " + std::to_string(chunks) +
                               " chunks of 75 tokens, concatenated (as AUTOMATIC1111 does)";
      stage(obs, note.c_str());
    }
    cond = encode_prompt(prompt, p.clip_skip, chunks);
    require_finite(cond, "the text embeddings of the prompt");
    if (cfg_on) uncond = encode_prompt(p.negative_prompt, p.clip_skip, chunks);
    if (cfg_on) require_finite(uncond, "the text embeddings of the negative prompt");
  }
  if (opts_.lowvram) nets_->release_text();
  res.text_ms = ms_since(t0);
  if (obs) {
    const WeightedPrompt wc = tokenize(prompt, (int)(cond.size() / ((size_t)cfg.clip.width * WeightedPrompt::kChunkLength)));
    const WeightedPrompt wu = cfg_on ? tokenize(p.negative_prompt, wc.chunk_count) : WeightedPrompt{};
    TextEvent te;
    te.prompt = &wc;
    te.negative = cfg_on ? &wu : nullptr;
    te.cond = &cond;
    te.uncond = cfg_on ? &uncond : nullptr;
    te.chunks = wc.chunk_count;
    te.width = cfg.clip.width;
    te.clip_skip = p.clip_skip;
    te.text_ms = res.text_ms;
    obs->on_text(te);
  }
  const int ctx_len = (int)(cond.size() / (size_t)cfg.clip.width);

  // 2. Initial latent: the seed's torch-compatible noise, then the init image if any.
  TorchRng rng(p.seed);
  std::vector<float> noise_f = rng.randn((int64_t)n);
  Latent noise(noise_f.begin(), noise_f.end());
  auto sampler = make_sampler(p);

  Latent init_latent;               // clean latent of the init image
  std::vector<float> mask_latent;   // h x w, 1 = repaint (soft, for blending)
  std::vector<float> unet_extra;    // 9-channel UNets: [mask (1), masked-image latent (4)]
  if (p.init_image) {
    stage(obs, "encode image");
    auto img = image_to_tensor(*p.init_image);
    auto lat = encode_image(img, p.height, p.width);
    require_finite(lat, "the VAE encoding of the init image");
    init_latent.assign(lat.begin(), lat.end());
    if (p.mask) {
      auto m = image_to_mask(*p.mask);
      // Soft mask for latent blending: the fraction of each f x f block to repaint.
      mask_latent.assign((size_t)lh * lw, 0.f);
      for (int y = 0; y < p.height; ++y)
        for (int x = 0; x < p.width; ++x)
          mask_latent[(size_t)(y / f) * lw + x / f] += (m[(size_t)y * p.width + x] >= 0.5f ? 1.f : 0.f) / (f * f);
      if (cfg.unet.in_channels == 9) {
        // As the inpainting UNet was trained: binary mask, nearest-downsampled, and the latent of
        // the image with the repaint region set to 0 (grey).
        for (size_t i = 0; i < m.size(); ++i)
          if (m[i] >= 0.5f)
            for (int c = 0; c < 3; ++c) img[(size_t)c * m.size() + i] = 0.f;
        auto masked = encode_image(img, p.height, p.width);
        unet_extra.resize((size_t)(1 + lc) * lh * lw);
        for (int y = 0; y < lh; ++y)
          for (int x = 0; x < lw; ++x)
            unet_extra[(size_t)y * lw + x] = m[(size_t)(y * f) * p.width + x * f] >= 0.5f ? 1.f : 0.f;
        std::copy(masked.begin(), masked.end(), unet_extra.begin() + (size_t)lh * lw);
      }
    }
    if (opts_.lowvram) nets_->release_vae();
  }

  int first = 0;
  Latent x(n);
  if (p.start_latent) {
    first = p.start_step;
    x.assign(p.start_latent->begin(), p.start_latent->end());
  } else if (p.init_image) {
    first = sampler->steps() - (int)(sampler->steps() * p.strength);
    NoiseLevel lv = sampler->level(first);
    for (size_t i = 0; i < n; ++i) x[i] = lv.signal * init_latent[i] + lv.noise * noise[i];
    if (first == sampler->steps()) x = init_latent;  // strength 0: the image itself
  } else {
    for (size_t i = 0; i < n; ++i) x[i] = noise[i] * sampler->init_noise_scale();
  }

  // 3. The UNet, batch 2 = [uncond, cond] with guidance, batch 1 without.
  stage(obs, "load unet");
  const int batch = cfg_on ? 2 : 1;
  auto& N = *nets_;
  if (!N.unet || N.unet_batch != batch || N.unet_h != lh || N.unet_w_ != lw || N.unet_ctx != ctx_len ||
      N.unet_maps != p.attention_maps || N.unet_profile != p.profile) {
    N.unet.reset();
    if (!N.unet_w) N.unet_w = load_merged(ctx_, *ckpt_, kUNetPrefix, dtype_, loras_, N.unet_lora);
    nn::NetOptions uo;
    uo.attention_maps = p.attention_maps;
    uo.profile = p.profile;
    N.unet = std::make_unique<nn::UNet>(ctx_, *N.unet_w, cfg.unet, batch, lh, lw, ctx_len, uo);
    N.unet_batch = batch, N.unet_h = lh, N.unet_w_ = lw, N.unet_ctx = ctx_len, N.unet_maps = p.attention_maps;
    N.unet_profile = p.profile;
  }
  {
    std::vector<float> ctx_all;
    if (cfg_on) ctx_all = uncond;
    ctx_all.insert(ctx_all.end(), cond.begin(), cond.end());
    N.unet->set_context(ctx_all);
  }

  const int cin = cfg.unet.in_channels;
  const size_t plane = (size_t)lh * lw;
  std::vector<float> eps_cond, eps_uncond, unet_x_in;
  std::vector<AttentionMap> attention;  // GenerateParams::attention_maps, read back for observers
  std::vector<DispatchTiming> unet_timings;  // GenerateParams::profile, read back for observers
  ModelFn model = [&](const Latent& x_in, double t) {
    if (obs) unet_x_in.assign(x_in.begin(), x_in.end());
    std::vector<float> in((size_t)batch * cin * plane);
    for (int b = 0; b < batch; ++b) {
      float* dst = in.data() + (size_t)b * cin * plane;
      for (size_t i = 0; i < n; ++i) dst[i] = (float)x_in[i];
      if (cin == 9) std::copy(unet_extra.begin(), unet_extra.end(), dst + n);
    }
    std::vector<float> ts((size_t)batch, (float)t);
    auto out = N.unet->forward(in, ts);
    if (p.profile && obs) unet_timings = N.unet->graph().timings();
    if (p.attention_maps && obs) {
      const auto& layers = N.unet->attention_layers();
      attention.resize(layers.size());
      for (size_t i = 0; i < layers.size(); ++i) {
        AttentionMap& m = attention[i];
        m.block = layers[i].block;
        m.level = layers[i].level;
        m.height = layers[i].height, m.width = layers[i].width;
        m.tokens = layers[i].tokens;
        m.probs = N.unet->attention_probs(i);
      }
    }
    if (out.size() != (size_t)batch * n) fail("UNet returned an unexpected output size");
    Latent e(n);
    if (cfg_on) {
      eps_uncond.assign(out.begin(), out.begin() + (ptrdiff_t)n);
      eps_cond.assign(out.begin() + (ptrdiff_t)n, out.end());
      const float s = (float)p.cfg_scale;
      for (size_t i = 0; i < n; ++i) e[i] = eps_uncond[i] + s * (eps_cond[i] - eps_uncond[i]);
    } else {
      eps_cond = std::move(out);
      for (size_t i = 0; i < n; ++i) e[i] = eps_cond[i];
    }
    return e;
  };

  stage(obs, "sample");
  t0 = Clock::now();
  auto step_t0 = Clock::now();
  StepHook hook = [&](const StepInfo& info, Latent& xs) {
    require_finite(xs, "the latent after sampling step " + std::to_string(info.index + 1) + " of " + std::to_string(info.count));
    NoiseLevel lv = sampler->level(info.index + 1);
    if (!mask_latent.empty() && cin == 4) {
      // Keep the known region: re-impose the init latent, noised to where the sampler now is
      // (clean after the last step), outside the mask.
      const bool last = info.index + 1 == sampler->steps();
      for (int c = 0; c < lc; ++c)
        for (size_t i = 0; i < plane; ++i) {
          const size_t k = (size_t)c * plane + i;
          const double known = last ? init_latent[k] : lv.signal * init_latent[k] + lv.noise * noise[k];
          xs[k] = mask_latent[i] * xs[k] + (1.0 - mask_latent[i]) * known;
        }
    }
    if (obs) {
      // Observers get noise predictions whatever the UNet predicts: a v output becomes
      // eps = sqrt(a) v + sqrt(1 - a) x_in at the step's level a = 1 / (1 + sigma^2), the same
      // conversion the sampler applied to the guided output (guidance is linear, so guiding the
      // converted halves gives the sampler's eps).
      if (schedule_->prediction() != Prediction::Epsilon) {
        const double a = 1.0 / (1.0 + info.sigma * info.sigma);
        const Latent x_in(unet_x_in.begin(), unet_x_in.end());
        for (std::vector<float>* half : {&eps_cond, &eps_uncond}) {
          if (half->size() != x_in.size()) continue;  // no uncond half without guidance
          Latent o(half->begin(), half->end());
          schedule_->output_to_eps(x_in, o, a);
          half->assign(o.begin(), o.end());
        }
      }
      StepEvent e;
      e.index = info.index;
      e.count = info.count;
      e.t = info.t;
      e.sigma = info.sigma;
      e.channels = lc, e.height = lh, e.width = lw;
      e.x = &xs;
      e.denoised = info.denoised;
      e.eps = info.eps;
      e.eps_cond = &eps_cond;
      e.eps_uncond = cfg_on ? &eps_uncond : nullptr;
      e.x_in = &unet_x_in;
      e.x_signal = lv.signal, e.x_noise = lv.noise;
      if (p.attention_maps) e.attention = &attention;
      if (p.profile) e.unet_timings = &unet_timings;
      e.step_ms = ms_since(step_t0);
      obs->on_step(e);
      if (obs->cancelled()) fail("generation cancelled");
    }
    step_t0 = Clock::now();
  };
  x = sampler->run(std::move(x), model, rng, first, hook);
  res.steps_run = sampler->steps() - first;
  res.sample_ms = ms_since(t0);
  if (opts_.lowvram) nets_->release_unet();

  // 4. Decode.
  stage(obs, "decode");
  t0 = Clock::now();
  res.latent.assign(x.begin(), x.end());
  res.pixels = decode_latent(res.latent, lh, lw);
  require_finite(res.pixels, "the decoded image (VAE decoder output)");
  if (opts_.lowvram) nets_->release_vae();
  res.decode_ms = ms_since(t0);
  res.image = tensor_to_image(res.pixels.data(), cfg.vae.out_channels, p.height, p.width);
  res.total_ms = ms_since(t_start);
  return res;
}

std::vector<float> predicted_x0(const std::vector<float>& x_in, const std::vector<float>& eps, double sigma) {
  if (x_in.size() != eps.size()) fail("predicted_x0: latent and noise prediction differ in size");
  const double c = std::sqrt(1.0 + sigma * sigma);
  std::vector<float> x0(x_in.size());
  for (size_t i = 0; i < x0.size(); ++i) x0[i] = (float)((double)x_in[i] * c - sigma * (double)eps[i]);
  return x0;
}

// ---- previews -------------------------------------------------------------------------------

Image latent_preview(const std::vector<double>& latent, int h, int w, const LatentRgbMap& map, double scale) {
  map.check("latent_preview");
  const size_t plane = (size_t)h * w;
  if (h < 1 || w < 1 || latent.size() != (size_t)map.channels * plane)
    fail("latent_preview: the latent has " + std::to_string(latent.size()) + " values, expected " +
         std::to_string(map.channels) + "x" + std::to_string(h) + "x" + std::to_string(w));
  // f32, in the kernel's order. `volatile` keeps the compiler from fusing a product and a sum
  // into one FMA (GCC does by default where the target has FMA; the kernel's ops are `precise`).
  const float s = (float)scale;
  std::vector<float> rgb(3 * plane);
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) {
      float v = map.bias[c];
      for (int l = 0; l < map.channels; ++l) {
        const float x = s * (float)latent[l * plane + i];
        volatile float prod = map.weights[(size_t)l * 3 + c] * x;
        v = v + prod;
      }
      rgb[c * plane + i] = v;
    }
  return tensor_to_image(rgb.data(), 3, h, w);
}

}  // namespace vksd
