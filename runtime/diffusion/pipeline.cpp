#include "runtime/diffusion/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <utility>

#include "runtime/model/checkpoint.h"
#include "runtime/gpu/context.h"
#include "runtime/error.h"
#include "runtime/diffusion/denoiser.h"
#include "runtime/diffusion/finite_check.h"
#include "runtime/diffusion/latent_init.h"
#include "runtime/diffusion/pipeline_nets.h"
#include "runtime/diffusion/sampling_loop.h"
#include "runtime/gpu/graph.h"
#include "runtime/io/infotext.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/nn/unet.h"
#include "runtime/nn/vae.h"
#include "runtime/gpu/scratch_arena.h"
#include "runtime/nn/vae_tiled.h"
#include "runtime/ops/matrix_unit_check.h"
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

SdPipeline::SdPipeline(Context& ctx, const PipelineOptions& opts)
    : ctx_(ctx), opts_(opts), lowvram_(opts.lowvram), scratch_(std::make_shared<ScratchArena>(ctx)),
      nets_(std::make_unique<Nets>()) {
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
  // Before any network is built on it (a no-op without a matrix unit, and once per Context).
  matrix_unit_notice_ = ops::check_matrix_unit(ctx).notice;
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

std::unique_ptr<WeightStore> load_merged(Context& ctx, const Checkpoint& ck, const std::string& prefix, DType dtype,
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
  for (size_t i = 0; i < nets_->text_w.size(); ++i)
    if (nets_->text_w[i]) remerge(*ckpt_, config().text_encoder(i).prefix, *nets_->text_w[i], loras_, nets_->text_lora[i]);
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
  return tokenize_for(prompt_with_loras, pad_chunks, config().clip.pad_token);
}

WeightedPrompt SdPipeline::tokenize_for(const std::string& prompt_with_loras, int pad_chunks, int32_t pad_id) const {
  ChunkOptions o;
  o.pad_id = pad_id;  // SD 1.x: the end token; SD 2.x (OpenCLIP): 0
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
  if (std::min({p.original_width, p.original_height, p.target_width, p.target_height}) < 0 ||
      std::min(p.crop_top, p.crop_left) < 0)
    fail("size conditioning: original and target sizes must be positive (0 = the image size) and the crop "
         "coordinates >= 0");
  if (!(p.strength >= 0 && p.strength <= 1)) fail("strength must be within [0, 1] (got " + fmt_g(p.strength) + ")");
  int layers = config().clip.context_layer(0);  // the deepest clip skip every encoder allows
  for (const ClipConfig& c : config().text_encoders()) layers = std::min(layers, c.context_layer(0));
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

// ---- generation -----------------------------------------------------------------------------

GenerateResult SdPipeline::generate(const GenerateParams& p, Observer* obs) {
  check_params(p);
  if (!matrix_unit_notice_.empty() && obs) obs->on_notice(std::exchange(matrix_unit_notice_, ""));
  fit_memory_budget(p, obs);
  const auto t_start = Clock::now();
  set_loras(resolve_loras(p));
  const ModelConfig& cfg = config();
  const int f = cfg.vae.downsample_factor();
  const int lh = p.height / f, lw = p.width / f, lc = cfg.vae.embed_dim;
  GenerateResult res;
  res.seed = p.seed;
  res.parameters = parameters_text(p);

  // 1. Conditioning: the prompt's (and the negative prompt's) text embeddings.
  ctx_.begin_memory_stage();
  GuidedConditioning c = condition(p, obs, res.text_ms);
  res.stage_peaks.emplace_back("text", ctx_.memory_stage_peak());

  // 2. The starting latent: the seed's torch-compatible noise, then the init image if any
  //    (whose encoding also gives an inpainting UNet its extra channels).
  TorchRng rng(p.seed);
  const std::vector<float> noise = rng.randn((int64_t)lc * lh * lw);
  auto sampler = make_sampler(p);
  ctx_.begin_memory_stage();
  InitImage init = encode_init_image(p, obs);
  if (p.init_image) res.stage_peaks.emplace_back("init image", ctx_.memory_stage_peak());
  c.cond.concat = c.uncond.concat = init.concat;
  LatentStart start = initial_latent(p, *sampler, Latent(noise.begin(), noise.end()), std::move(init.latent),
                                     std::move(init.repaint), cfg.schedule.init_noise);

  // 3. The denoiser: the UNet with its conditioning and guidance.
  stage(obs, "load unet");
  ctx_.begin_memory_stage();
  Denoiser::Options dopt;
  dopt.cfg_scale = p.cfg_scale;
  dopt.observed = obs != nullptr;
  dopt.attention_maps = p.attention_maps && obs;
  dopt.profile = p.profile && obs;
  Denoiser denoiser(unet_for(p, c), c, lc, dopt);

  // 4. The sampler loop.
  stage(obs, "sample");
  auto t0 = Clock::now();
  LoopOptions lo;
  lo.channels = lc, lo.height = lh, lo.width = lw;
  lo.attention_maps = p.attention_maps, lo.profile = p.profile;
  const int first = start.first;
  Latent x = sampling_loop(*sampler, denoiser, std::move(start), rng, *schedule_, obs, lo);
  res.steps_run = sampler->steps() - first;
  res.sample_ms = ms_since(t0);
  res.stage_peaks.emplace_back("unet", ctx_.memory_stage_peak());
  if (lowvram_) nets_->release_unet();

  // 5. Decode.
  stage(obs, "decode");
  ctx_.begin_memory_stage();
  t0 = Clock::now();
  res.latent.assign(x.begin(), x.end());
  res.pixels = decode_latent(res.latent, lh, lw);
  require_finite(res.pixels, "the decoded image (VAE decoder output)");
  res.stage_peaks.emplace_back("vae decode", ctx_.memory_stage_peak());
  if (lowvram_) nets_->release_vae();
  res.decode_ms = ms_since(t0);
  res.image = tensor_to_image(res.pixels.data(), cfg.vae.out_channels, p.height, p.width);
  res.total_ms = ms_since(t_start);
  return res;
}

// The UNet for p's batch (2 with guidance), geometry, context length and options: the resident
// one when it fits, else built anew (the weights stay resident).
nn::UNet& SdPipeline::unet_for(const GenerateParams& p, const GuidedConditioning& c) {
  const int f = config().vae.downsample_factor();
  const int lh = p.height / f, lw = p.width / f, batch = c.guided ? 2 : 1, ctx_len = c.cond.tokens;
  auto& N = *nets_;
  if (!N.unet || N.unet_batch != batch || N.unet_h != lh || N.unet_w_ != lw || N.unet_ctx != ctx_len ||
      N.unet_maps != p.attention_maps || N.unet_profile != p.profile) {
    N.unet.reset();
    if (!N.unet_w) N.unet_w = load_merged(ctx_, *ckpt_, kUNetPrefix, dtype_, loras_, N.unet_lora);
    nn::NetOptions uo;
    uo.scratch = scratch_;
    uo.attention_maps = p.attention_maps;
    uo.profile = p.profile;
    N.unet = std::make_unique<nn::UNet>(ctx_, *N.unet_w, config().unet, batch, lh, lw, ctx_len, uo);
    N.unet_batch = batch, N.unet_h = lh, N.unet_w_ = lw, N.unet_ctx = ctx_len, N.unet_maps = p.attention_maps;
    N.unet_profile = p.profile;
  }
  return *N.unet;
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
