#include "server/a1111.h"

#include "runtime/diffusion/sdxl_size_conditioning.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>

#include "runtime/vksd.h"
#include "server/base64.h"

using nlohmann::json;

namespace vksd::server {

namespace {

// Limits beyond the model's own rules, so that one request cannot tie the device up for hours
// or exhaust memory by accident.
constexpr int kMaxSide = 4096, kMaxSteps = 1000, kMaxBatch = 64, kMaxIter = 100;
constexpr long long kMaxSeed = 0xffffffffffffll;  // as `vksd generate --seed`

// The body's value of a field, or nullptr when it is absent or null ("not given").
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::string type_name(const json& v) { return v.type_name(); }

std::string get_string(const json& body, const char* name, const std::string& def) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_string()) throw RequestError(name, std::string(name) + " must be a string (got " + type_name(*v) + ")");
  return v->get<std::string>();
}

long long get_int(const json& body, const char* name, long long def, long long lo, long long hi) {
  const json* v = field(body, name);
  if (!v) return def;
  long long r = 0;
  if (v->is_number_integer()) r = v->get<long long>();
  else if (v->is_number_unsigned()) r = v->get<unsigned long long>() > (unsigned long long)hi ? hi + 1 : v->get<long long>();
  else if (v->is_number_float() && std::isfinite(v->get<double>()) && v->get<double>() == std::floor(v->get<double>()) &&
           std::fabs(v->get<double>()) < 9e15)
    r = (long long)v->get<double>();  // 20.0 is 20, as pydantic takes it
  else
    throw RequestError(name, std::string(name) + " must be an integer (got " + v->dump() + ")");
  if (r < lo || r > hi)
    throw RequestError(name, std::string(name) + " must be within [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                 "] (got " + std::to_string(r) + ")");
  return r;
}

double get_num(const json& body, const char* name, double def, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) throw RequestError(name, std::string(name) + " must be a number (got " + v->dump() + ")");
  const double r = v->get<double>();
  if (!(r >= lo && r <= hi)) {
    char b[160];
    std::snprintf(b, sizeof b, "%s must be within [%g, %g] (got %g)", name, lo, hi, r);
    throw RequestError(name, b);
  }
  return r;
}

// A base64 image field's picture, in `channels` channels.
Image get_image(const json& v, const char* name, int channels) {
  if (!v.is_string()) throw RequestError(name, std::string(name) + " must be a base64-encoded image (got " + type_name(v) + ")");
  auto bytes = base64_decode(v.get<std::string>());
  if (!bytes || bytes->empty()) throw RequestError(name, std::string(name) + " is not valid base64");
  try {
    return decode_image(bytes->data(), bytes->size(), channels, name);
  } catch (const Error& e) {
    throw RequestError(name, e.what());
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = (char)std::tolower((unsigned char)c);
  return s;
}

}  // namespace

SamplerKind parse_sampler_name(const std::string& name, const char* field_name) {
  const std::string n = lower(name);
  std::string valid;
  for (const std::string& cli : sampler_cli_names()) {
    const SamplerKind k = parse_sampler(cli);
    if (n == cli || n == lower(sampler_a1111_name(k))) return k;
    valid += std::string(valid.empty() ? "" : ", ") + "\"" + sampler_a1111_name(k) + "\"";
  }
  throw RequestError(field_name, std::string(field_name) + " \"" + name + "\" is not a sampler vksd has; valid: " + valid);
}

ImageRequest parse_image_request(const json& body, bool img2img, const SdPipeline& pipe, const RequestDefaults& defaults) {
  if (!body.is_object()) throw RequestError("body", "the request body must be a JSON object");
  ImageRequest r;
  GenerateParams& p = r.params;
  p.prompt = get_string(body, "prompt", "");
  p.negative_prompt = get_string(body, "negative_prompt", "");
  p.steps = (int)get_int(body, "steps", 20, 1, kMaxSteps);
  p.cfg_scale = get_num(body, "cfg_scale", 7.0, 0, 100);
  // A1111 also takes the older sampler_index with the same names.
  const char* sampler_field = field(body, "sampler_name") ? "sampler_name" : "sampler_index";
  p.sampler = parse_sampler_name(get_string(body, sampler_field, "euler_a"), sampler_field);
  // A1111 1.6+ names the noise schedule apart: "DPM++ 2M" + scheduler "Karras" is vksd's
  // dpm++2m_karras. vksd's other samplers have one schedule each.
  const std::string scheduler = lower(get_string(body, "scheduler", "automatic"));
  if (scheduler == "karras" && p.sampler == SamplerKind::DpmPP2M) p.sampler = SamplerKind::DpmPP2MKarras;
  else if (scheduler != "automatic" && !(scheduler == "karras" && p.sampler == SamplerKind::DpmPP2MKarras))
    throw RequestError("scheduler", "scheduler \"" + get_string(body, "scheduler", "") + "\" is not available for " +
                                        sampler_a1111_name(p.sampler) + "; vksd has \"Automatic\", and \"Karras\" with DPM++ 2M");
  p.eta = get_num(body, "eta", -1, -1, 10);
  if (p.eta < 0) p.eta = -1;  // negative: the sampler's default
  const long long seed = get_int(body, "seed", -1, -1, kMaxSeed);
  p.seed = seed < 0 ? random_seed() : (uint64_t)seed;
  r.batch_size = (int)get_int(body, "batch_size", 1, 1, kMaxBatch);
  r.n_iter = (int)get_int(body, "n_iter", 1, 1, kMaxIter);
  const int layers = pipe.config().clip.layers;
  p.clip_skip = defaults.clip_skip;
  if (const json* o = field(body, "override_settings"); o && o->is_object())
    p.clip_skip = (int)get_int(*o, "CLIP_stop_at_last_layers", p.clip_skip, 1, layers);

  if (img2img) {
    const json* init = field(body, "init_images");
    if (!init) throw RequestError("init_images", "init_images is required: a list with one base64-encoded image");
    if (!init->is_array() || init->empty())
      throw RequestError("init_images", "init_images must be a non-empty list of base64-encoded images");
    p.init_image = get_image((*init)[0], "init_images", 3);
    if (const json* m = field(body, "mask")) p.mask = get_image(*m, "mask", 1);
    p.strength = get_num(body, "denoising_strength", 0.75, 0, 1);
  }

  // Size: as asked, else the init image's, else the model's native size.
  const int m = pipe.size_multiple();
  const int def_w = p.init_image ? p.init_image->width : pipe.config().sample_size;
  const int def_h = p.init_image ? p.init_image->height : pipe.config().sample_size;
  p.width = (int)get_int(body, "width", def_w, 1, kMaxSide);
  p.height = (int)get_int(body, "height", def_h, 1, kMaxSide);
  for (auto [name, v] : {std::pair{"width", p.width}, std::pair{"height", p.height}})
    if (v % m) throw RequestError(name, std::string(name) + " must be a multiple of " + std::to_string(m) + " for this model (got " + std::to_string(v) + ")");
  // SDXL's size conditioning (vksd's fields, the names of GenerateParams and of ComfyUI's SDXL
  // text node; A1111's API has none): 0 = the image size, crop 0, 0. Other models ignore them.
  for (auto [name, v] : {std::pair{"original_width", &p.original_width}, std::pair{"original_height", &p.original_height},
                         std::pair{"target_width", &p.target_width}, std::pair{"target_height", &p.target_height}})
    *v = (int)get_int(body, name, 0, 0, kMaxSide * 4);
  p.crop_top = (int)get_int(body, "crop_top", 0, 0, kMaxSide * 4);
  p.crop_left = (int)get_int(body, "crop_left", 0, 0, kMaxSide * 4);
  // An init image or mask of another size is fitted as `vksd generate` fits it, by A1111's
  // resize_mode: 0 just resize, 1 crop and resize, 2 resize and fill (3, A1111's latent upscale,
  // is refused as out of range).
  if (img2img) {
    const ResizeMode modes[] = {ResizeMode::JustResize, ResizeMode::CropAndResize, ResizeMode::ResizeAndFill};
    const ResizeMode mode = modes[get_int(body, "resize_mode", 0, 0, 2)];
    for (auto [img, name] : {std::pair{&p.init_image, "init_images"}, std::pair{&p.mask, "mask"}}) try {
        fit_init_image(*img, name == std::string("mask") ? "mask" : "init_images[0]", p.width, p.height, mode);
      } catch (const Error& e) {
        throw RequestError(name, e.what());
      }
  }

  // The runtime's own check last (sampler-specific step limits, inpainting models, ...).
  try {
    pipe.check_params(p);
  } catch (const Error& e) {
    throw RequestError("body", e.what());
  }

  r.echo = body;
  r.echo["prompt"] = p.prompt;
  r.echo["negative_prompt"] = p.negative_prompt;
  r.echo["steps"] = p.steps;
  r.echo["cfg_scale"] = p.cfg_scale;
  r.echo["sampler_name"] = sampler_a1111_name(p.sampler);
  r.echo["seed"] = p.seed;
  r.echo["batch_size"] = r.batch_size;
  r.echo["n_iter"] = r.n_iter;
  r.echo["width"] = p.width;
  r.echo["height"] = p.height;
  if (img2img) r.echo["denoising_strength"] = p.strength;
  if (pipe.config().size_embed_dim > 0) {  // the size conditioning the model was given
    const SdxlSizeConditioning sc = size_conditioning(p);
    r.echo["original_width"] = sc.original_w, r.echo["original_height"] = sc.original_h;
    r.echo["target_width"] = sc.target_w, r.echo["target_height"] = sc.target_h;
    r.echo["crop_top"] = sc.crop_top, r.echo["crop_left"] = sc.crop_left;
  }
  return r;
}

std::string png_base64(const GenerateResult& r) {
  return base64_encode(encode_png(r.image, {{"parameters", r.parameters}}));
}

json info_json(const ImageRequest& req, const std::vector<GenerateResult>& results, const std::string& model_name) {
  const GenerateParams& p = req.params;
  json seeds = json::array(), prompts = json::array(), negatives = json::array(), infotexts = json::array();
  for (const auto& res : results) {
    seeds.push_back(res.seed);
    prompts.push_back(p.prompt);
    negatives.push_back(p.negative_prompt);
    infotexts.push_back(res.parameters);
  }
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", std::localtime(&now));
  return {{"prompt", p.prompt},
          {"all_prompts", prompts},
          {"negative_prompt", p.negative_prompt},
          {"all_negative_prompts", negatives},
          {"seed", p.seed},
          {"all_seeds", seeds},
          {"subseed", -1},
          {"all_subseeds", json::array()},
          {"subseed_strength", 0},
          {"width", p.width},
          {"height", p.height},
          {"sampler_name", sampler_a1111_name(p.sampler)},
          {"cfg_scale", p.cfg_scale},
          {"steps", p.steps},
          {"batch_size", req.batch_size},
          {"restore_faces", false},
          {"sd_model_name", model_name},
          {"denoising_strength", p.init_image ? json(p.strength) : json(nullptr)},
          {"clip_skip", p.clip_skip},
          {"index_of_first_image", 0},
          {"infotexts", infotexts},
          {"styles", json::array()},
          {"job_timestamp", stamp},
          {"is_using_inpainting_conditioning", p.mask.has_value()},
          {"version", "vksd"}};
}

}  // namespace vksd::server
