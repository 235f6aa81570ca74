// The generation pipeline (SdPipeline; vksd::Pipeline is a Vulkan compute pipeline): prompt -> CLIP text encoder -> sampler loop over the UNet with
// classifier-free guidance -> VAE decoder -> image. Also image-to-image (the init image is
// VAE-encoded and noised to `strength`) and inpainting (ordinary UNets: the known region of the
// latent is re-imposed after every step; 9-channel inpainting UNets: the mask and the masked
// image's latent are extra UNet inputs).
//
// The networks are built once and reused across generate() calls with the same geometry. With
// `lowvram` each network is loaded right before its stage and released right after it, so that
// only one of the three (and its activations) is resident at a time.
//
// generate() is a short sequence of named stages, one file each (see the private section):
// the conditioner (text -> GuidedConditioning: context, optional vector y, optional concat
// channels), the init image's encoding, the starting latent, the denoiser (the UNet with its
// conditioning, prediction type and guidance, as the samplers' ModelFn), the sampler loop and
// the VAE decode. A model family is data in these stages (which conditioning fields it fills,
// what its configs say), not a branch in generate().
//
// Observer: called after each stage and each sampler step with everything a progress bar, a
// step dump (--save-steps) or the viewer needs.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include <optional>
#include <string>
#include <vector>

#include "runtime/diffusion/memory_budget.h"
#include "runtime/diffusion/precision_plan.h"
#include "runtime/gpu/dtype.h"
#include "runtime/io/image_io.h"
#include "runtime/model/lora.h"
#include "runtime/model/model_config.h"
#include "runtime/diffusion/samplers.h"

namespace vksd {

class Context;
class Checkpoint;
class ScratchArena;
struct GuidedConditioning;
struct InitImage;
namespace nn {
class UNet;
struct NetOptions;
}
class Tokenizer;
class NoiseSchedule;
struct WeightedPrompt;
struct DispatchTiming;

struct PipelineOptions {
  std::string model_path;   // .safetensors (original SD 1.x / 2.x layout) or a diffusers folder
  std::string config_path;  // vksd model config JSON; "" = look beside the checkpoint
  std::string config_json;  // alternatively the config as JSON text (wins over config_path)
  std::string vocab_path;   // CLIP vocabulary; "" = find_vocabulary's search
  // The UNet's prediction type, "eps" or "v" ("" = the model config's; single files do not say
  // it: SD 2.x 768-v checkpoints need "v").
  std::string prediction;
  bool fp32 = false;        // keep weights and activations in fp32 (default: the device's fp16)
  bool lowvram = false;     // one network resident at a time
  // When the three networks do not fit the memory budget together but one at a time does,
  // switch this pipeline to lowvram (Observer::on_notice says so) instead of refusing the run,
  // as a user of a small GPU expects. false: refuse with advice (memory_budget.h).
  bool auto_lowvram = true;
  // VAE tiling (nn/vae_tiled.h): decode and encode in overlapping tiles of vae_tile latent
  // pixels, blended, so the VAE's activations are those of one tile. Auto = on when lowvram is
  // set and the latent has more pixels than one tile (SD 1.x defaults: images larger than
  // 512 x 512 = 262,144 pixels).
  enum class VaeTiling { Off, On, Auto };
  VaeTiling vae_tiling = VaeTiling::Auto;
  int vae_tile = 64, vae_tile_overlap = 16;  // latent pixels
  // Trust the VAE with fp16 activations even where the model's data says they overflow
  // (VaeConfig::fp32_activations, SDXL): for an fp16-fixed VAE. precision_plan.h.
  bool vae_fp16 = false;
  // Device memory a run may use, MiB; 0 = $VKSD_MEMORY_BUDGET_MB, else the device's largest
  // device-local heap. A run estimated above it is refused before anything is uploaded.
  uint64_t memory_budget_mb = 0;
  // Where a prompt's <lora:NAME:WEIGHT> finds NAME.safetensors ("" = prompt LoRAs are an error).
  std::string lora_dir;
};

// Refused up front by check_params: values no real use needs, which overflow to NaN/inf.
constexpr double kMaxCfgScale = 100;
constexpr double kMaxEta = 10;
constexpr size_t kMaxPromptBytes = 32768;  // each of prompt and negative prompt

struct GenerateParams {
  std::string prompt, negative_prompt;
  int width = 512, height = 512;
  int steps = 20;
  double cfg_scale = 7.0;  // 1 = no guidance (one UNet pass per step instead of a batch of two)
  SamplerKind sampler = SamplerKind::EulerAncestral;
  double eta = -1;         // < 0: the sampler's default
  // Which timesteps the steps visit (schedule.h). Default: the model config's
  // schedule.timestep_spacing, else each sampler's reference choice.
  TimestepSpacing spacing = TimestepSpacing::Default;
  uint64_t seed = 0;
  int clip_skip = 1;       // 1 = last CLIP layer; 2 = the one before (some fine-tunes want it)
  // Size conditioning, for models that take it (SDXL: ModelConfig::size_embed_dim > 0; others
  // ignore it): the original image size, the crop's top-left corner and the target size the
  // model is told, in pixels. 0 = the image's width / height (SDXL's usual choice), crop 0, 0.
  int original_width = 0, original_height = 0, target_width = 0, target_height = 0;
  int crop_top = 0, crop_left = 0;
  std::optional<Image> init_image;  // img2img / inpainting source, RGB, width x height
  double strength = 0.75;           // with init_image: 0 keeps it, 1 replaces it entirely
  std::optional<Image> mask;        // grayscale, width x height; white = repaint
  // Resume a run at step `start_step` (> 0) of the schedule from `start_latent`, the latent
  // after step start_step - 1 in the sampler's scaling (StepEvent::x of that step): "re-run from
  // here" with other settings (e.g. the guidance scale). Deterministic samplers then continue
  // exactly as a full run with these settings from that latent would; ancestral ones (euler_a,
  // ddpm, lcm) draw other fresh noise than the original run did.
  std::optional<std::vector<float>> start_latent;
  int start_step = 0;
  // Cross-attention maps (StepEvent::attention): the UNet is built with one more small dispatch
  // per cross-attention layer and its maps are read back after every step. Off: the UNet graph
  // is the plain one (no extra dispatch, no extra memory) and nothing is read back.
  bool attention_maps = false;
  // Per-dispatch GPU times of the UNet (StepEvent::unet_timings): the UNet graph is compiled
  // with Vulkan timestamp queries (and a barrier between dispatches, so that each is timed
  // alone; the numbers are unchanged) and rebuilt when this changes. Off: no query pool, no
  // extra barrier, nothing read back.
  bool profile = false;
  // LoRAs to merge into the UNet and text encoder (runtime/model/lora.h), applied before the
  // prompt's own <lora:NAME:WEIGHT> tags (which are removed from the text the encoder sees).
  std::vector<LoraRef> loras;
};

// Where the prompt's tokens go: one cross-attention layer's (or a mean of several layers')
// attention probabilities for the prompt (the conditional batch entry), mean over heads:
//   probs[j][i] = (1/heads) sum_h softmax_j(q_ih . k_jh / sqrt(d_head))
// for pixel i of the layer's height x width grid and context token j (0 = <start>, then the
// prompt's tokens, <end> and padding; 77 per chunk of a long prompt). For every pixel the
// probabilities over the tokens sum to 1.
struct AttentionMap {
  std::string block;          // "input 1", "middle", "output 4" (UNet block); a mean: "level 0"
  int level = 0;              // UNet level: 0 = full latent resolution, each level halves it
  int height = 0, width = 0;  // the layer's grid (latent size / 2^level)
  int tokens = 0;             // context length: rows of probs
  int layers = 1;             // how many layers this map is the mean of
  std::vector<float> probs;   // [tokens][height * width], token-major
  const float* token_map(int j) const { return probs.data() + (size_t)j * height * width; }
  size_t bytes() const { return sizeof(AttentionMap) + block.capacity() + probs.capacity() * sizeof(float); }
};

// One sampler step, as reported to observers. Latents are [1, C, h, w] in double.
// Lifetime: the pointers refer to the pipeline's working buffers and are valid only during the
// Observer::on_step call that receives the event (the next step overwrites them, and they are
// gone when generate() returns). An observer that keeps anything copies it (GenerationJob's
// StepRecord does).
struct StepEvent {
  int index = 0, count = 0;  // step of the full schedule (img2img starts later than 0)
  double t = 0, sigma = 0;   // timestep the UNet saw; noise level the step started from
  int channels = 4, height = 0, width = 0;    // latent geometry
  const std::vector<double>* x = nullptr;         // latent after the step (sampler's scaling)
  const std::vector<double>* denoised = nullptr;  // x0 prediction (clean-latent scale)
  const std::vector<double>* eps = nullptr;       // guided noise prediction
  // The UNet's noise prediction for the prompt (a v-prediction model's output converted to eps).
  const std::vector<float>* eps_cond = nullptr;
  const std::vector<float>* eps_uncond = nullptr; // for the negative prompt; null without CFG
  // The latent the UNet saw in this step, in the variance-preserving scaling the UNet expects
  // (x_in = sqrt(a) x0 + sqrt(1 - a) eps with a = 1 / (1 + sigma^2)), so that any noise
  // prediction can be turned into its x0 prediction: predicted_x0(x_in, eps, sigma).
  const std::vector<float>* x_in = nullptr;
  double step_ms = 0;  // wall time of this step (UNet + sampler)
  double x_signal = 1, x_noise = 0;  // x = x_signal * x0 + x_noise * eps after the step
  // With GenerateParams::attention_maps: every cross-attention layer's map of this step's UNet
  // evaluation (the last one, for samplers that evaluate more than once), in graph order.
  const std::vector<AttentionMap>* attention = nullptr;
  // With GenerateParams::profile: the GPU time of every dispatch of this step's UNet evaluation
  // (the last one, for samplers that evaluate more than once), Graph::timings() in graph order;
  // empty when the device has no timestamp queries (DeviceInfo::timestamps).
  const std::vector<DispatchTiming>* unet_timings = nullptr;
};

// The text conditioning of a run, as reported to observers once per generate() (after the
// "encode prompt" stage). Lifetime: like StepEvent's, the pointers are valid only during the
// Observer::on_text call.
struct TextEvent {
  const WeightedPrompt* prompt = nullptr;    // the prompt's tokens, padded to `chunks` chunks
  const WeightedPrompt* negative = nullptr;  // the negative prompt's; null without guidance
  // [chunks * 77, width] each, exactly what the UNet's cross-attention gets (SdPipeline::
  // encode_prompt: the text encoder's output per 77-token chunk, emphasis applied).
  const std::vector<float>* cond = nullptr;
  const std::vector<float>* uncond = nullptr;  // null without guidance (cfg_scale 1)
  int chunks = 0, width = 0;  // width: the text encoder's hidden size
  int clip_skip = 1;
  double text_ms = 0;  // wall time of the text encoding (both prompts)
};

class Observer {
 public:
  virtual ~Observer() = default;
  // A stage begins: "load text encoder", "encode prompt", "load unet", "encode image",
  // "sample", "load vae", "decode".
  virtual void on_stage(const std::string& stage) {}
  virtual void on_step(const StepEvent& e) {}
  // The run's text conditioning, once, before sampling starts.
  virtual void on_text(const TextEvent& e) {}
  // Something the user should know that does not stop the run (e.g. "switching to lowvram").
  virtual void on_notice(const std::string& text) {}
  // Polled after every step: true stops generate() with an Error("generation cancelled").
  virtual bool cancelled() { return false; }
};

struct GenerateResult {
  Image image;                   // 8-bit RGB
  std::vector<float> pixels;     // raw decoder output [1, 3, H, W] (about [-1, 1], unclamped)
  std::vector<float> latent;     // final clean latent [1, C, h, w] (before 1/scale_factor)
  uint64_t seed = 0;
  std::string parameters;        // A1111 "parameters" text (also written into PNGs)
  double text_ms = 0, sample_ms = 0, decode_ms = 0, total_ms = 0;
  int steps_run = 0;
  // Measured peak device memory of each stage ("text", "init image", "unet", "vae decode"):
  // every vksd allocation alive at the stage's worst moment (Context::memory_stage_peak).
  std::vector<std::pair<std::string, uint64_t>> stage_peaks;
};

class SdPipeline {
 public:
  SdPipeline(Context& ctx, const PipelineOptions& opts);
  ~SdPipeline();
  SdPipeline(const SdPipeline&) = delete;
  SdPipeline& operator=(const SdPipeline&) = delete;

  // Checks every parameter first (Error naming the bad one), then generates.
  GenerateResult generate(const GenerateParams& p, Observer* observer = nullptr);
  // The parameter check generate() starts with, alone: throws an Error naming the bad parameter.
  // Reads only the model's configuration and schedule (no networks, no device work), so it is
  // safe from any thread, also while generate() runs on another one.
  void check_params(const GenerateParams& p) const;

  const ModelConfig& config() const;
  const NoiseSchedule& schedule() const { return *schedule_; }
  // The sampler generate() uses for these parameters (sampler, steps, eta, spacing resolved
  // against the model config): also what front-ends ask for the step count or timesteps.
  std::unique_ptr<Sampler> make_sampler(const GenerateParams& p) const;
  const std::string& model_name() const { return model_name_; }
  // The model's CLIP tokenizer (immutable and thread-safe: usable while generate() runs on
  // another thread), e.g. to show which token is which row of StepEvent::attention.
  const Tokenizer& tokenizer() const;
  // The prompt's tokens as generate() cuts them (tokenize_weighted: emphasis, BREAK, 75-token
  // chunks of 77 ids with BOS/EOS and padding), padded to `pad_chunks` chunks. Cheap, const and
  // thread-safe like tokenizer(): a UI may call it on every keystroke while a run is active.
  WeightedPrompt tokenize(const std::string& prompt, int pad_chunks = 0) const;
  // The same with another pad token (each text encoder pads with its own: ClipConfig::pad_token).
  WeightedPrompt tokenize_for(const std::string& prompt, int pad_chunks, int32_t pad_id) const;
  DType dtype() const { return dtype_; }
  // Weights and activations precision per network (precision_plan.h).
  PrecisionPlan precision() const;
  // Image size granularity: width and height must be multiples of this (8 for SD 1.x's VAE
  // times the UNet's 2^(levels-1) downsampling of the latent, i.e. 64 for SD 1.5).
  int size_multiple() const;
  // The A1111 parameters text for p (seed as given).
  std::string parameters_text(const GenerateParams& p) const;

  // Text conditioning exactly as generate() computes it: [chunks*77, width] per prompt,
  // emphasis applied. Exposed for tests and tools.
  std::vector<float> encode_prompt(const std::string& prompt, int clip_skip, int pad_to_chunks = 0);
  // Every text encoder's output for `prompt` (encode_prompt's context, and the pooled vectors
  // of the encoders that give one, concatenated: ModelConfig::pooled_width() values).
  struct TextOutput {
    std::vector<float> context, pooled;
  };
  TextOutput encode_text(const std::string& prompt, int clip_skip, int pad_to_chunks = 0);
  // Decode a clean latent [1, C, h, w] to the raw decoder output [1, 3, H, W].
  std::vector<float> decode_latent(const std::vector<float>& latent, int latent_h, int latent_w);
  // VAE posterior mean * scale_factor of an image [1, 3, H, W] in [-1, 1].
  std::vector<float> encode_image(const std::vector<float>& image, int height, int width);

  // Device memory generate(p) will need (memory_budget.h); generate() refuses a run whose
  // estimate exceeds the budget (PipelineOptions::memory_budget_mb, else the device's memory).
  MemoryEstimate memory_estimate(const GenerateParams& p) const { return memory_estimate(p, lowvram_); }

  // One network resident at a time: PipelineOptions::lowvram, or switched on by generate()
  // when the budget needs it (PipelineOptions::auto_lowvram); it then stays on.
  bool lowvram() const { return lowvram_; }

  // Whether the VAE runs tiled for an image of this size (PipelineOptions::vae_tiling).
  bool vae_tiled(int width, int height) const { return vae_tiled(width, height, lowvram_); }

  // Release every resident network (weights and graphs); they reload on demand.
  void release_all();

  // The LoRAs generate(p) applies: p.loras, then the prompt's <lora:NAME:WEIGHT> tags as
  // PipelineOptions::lora_dir/NAME.safetensors. A malformed tag or a missing file is an Error.
  std::vector<LoraRef> resolve_loras(const GenerateParams& p) const;
  // Make `loras` the merged set (generate() calls it; tests and tools may too). Each file is
  // read and matched to the model once (cached by path). Resident weights change only where
  // the set changes what they hold: those tensors are read again from the checkpoint file and
  // the new deltas added (the base is restored exactly, never by subtraction); networks loaded
  // later get the set as they load.
  void set_loras(const std::vector<LoraRef>& loras);

 private:
  struct Nets;
  void stage(Observer* o, const char* name) const;
  // Before anything is uploaded: refuse a run above the memory budget, or switch to lowvram
  // where that fits (memory_budget.cpp).
  void fit_memory_budget(const GenerateParams& p, Observer* obs);
  // The same questions asked for either residency (fit_memory_budget compares both).
  MemoryEstimate memory_estimate(const GenerateParams& p, bool lowvram) const;
  bool vae_tiled(int width, int height, bool lowvram) const;
  // The stages of generate(), in its order (each file of runtime/diffusion/ holds one):
  //   condition          conditioner.cpp   prompt -> GuidedConditioning ("encode prompt", on_text)
  //   encode_init_image  vae_stage.cpp     init image -> latent, inpainting mask ("encode image")
  //   initial_latent     latent_init.cpp   where the sampler starts
  //   unet_for, Denoiser denoiser.cpp      the UNet with its conditioning and guidance ("load unet")
  //   sampling_loop      sampling_loop.cpp the steps, observers ("sample")
  //   decode_latent      vae_stage.cpp     latent -> image ("decode")
  GuidedConditioning condition(const GenerateParams& p, Observer* obs, double& text_ms);
  InitImage encode_init_image(const GenerateParams& p, Observer* obs);
  nn::UNet& unet_for(const GenerateParams& p, const GuidedConditioning& c);
  nn::NetOptions vae_options() const;

  Context& ctx_;
  PipelineOptions opts_;
  std::atomic<bool> lowvram_{false};  // opts_.lowvram, or switched on by fit_memory_budget
  // The networks run one after another: their intermediates share one arena, the size of the
  // largest network's (NetOptions::scratch).
  std::shared_ptr<ScratchArena> scratch_;
  std::string matrix_unit_notice_;  // ops::check_matrix_unit's, told at the first generate()
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<NoiseSchedule> schedule_;
  std::unique_ptr<Nets> nets_;
  std::map<std::string, std::shared_ptr<const BoundLora>> lora_cache_;  // by path
  std::vector<ActiveLora> loras_;                                        // the merged set
  // LoRA short hashes by path, for parameters_text (which may run on another thread than
  // generate(), so it does not touch lora_cache_).
  mutable std::mutex lora_hash_mutex_;
  mutable std::map<std::string, std::string> lora_hashes_;
  DType dtype_ = DType::F32;
  std::string model_name_;
  mutable std::once_flag model_hash_once_;  // the file's hash, computed on first use
  mutable std::string model_hash_;
};

// The clean latent a noise prediction implies: x0 = x_in sqrt(1 + sigma^2) - sigma eps, for the
// UNet input x_in of a step at noise level sigma (StepEvent::x_in, ::sigma). For the guided eps
// it is the step's x0 prediction (StepEvent::denoised) of every sampler but lcm; for eps_cond
// and eps_uncond it is what the prompt alone, or the negative prompt alone, would predict.
std::vector<float> predicted_x0(const std::vector<float>& x_in, const std::vector<float>& eps, double sigma);

// The cheap latent -> RGB preview (the model's linear map, ModelConfig::preview; SD 1.x's is
// LatentRgbMap::sd1()), for showing noisy latents without running the decoder. `latent` is
// [map.channels, height, width]; output is 8-bit RGB at latent resolution. Computed in f32 in
// exactly the order of the GPU kernel (LatentPreview, shaders/latent_rgb.comp), so both give
// identical bytes: v_c = bias_c + sum_l w[l][c] * (scale * latent_l), then tensor_to_image's rule.
Image latent_preview(const std::vector<double>& latent, int height, int width, const LatentRgbMap& map,
                     double scale = 1.0);

}  // namespace vksd
