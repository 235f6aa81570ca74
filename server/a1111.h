// The AUTOMATIC1111 web API's request and response shapes (what /sdapi/v1/txt2img and
// /sdapi/v1/img2img take and give back), mapped onto the runtime's GenerateParams and
// GenerateResult. No HTTP here: the server (server.h) calls these with parsed JSON.
//
// Requests follow A1111: unknown fields are ignored and null means "not given"; a known field
// of the wrong type or out of range is a RequestError naming the field.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/vksd.h"

namespace vksd::server {

// A bad request: HTTP 422 (A1111/FastAPI's validation status) with the field and the reason.
struct RequestError : std::runtime_error {
  RequestError(std::string field, const std::string& message)
      : std::runtime_error(message), field(std::move(field)) {}
  std::string field;
};

// What a request asks for when it does not say (the server's options, /sdapi/v1/options).
struct RequestDefaults {
  int clip_skip = 1;  // A1111's CLIP_stop_at_last_layers
};

struct ImageRequest {
  GenerateParams params;  // the first image's; image i gets seed params.seed + i
  int batch_size = 1, n_iter = 1;
  int images() const { return batch_size * n_iter; }
  nlohmann::json echo;    // the response's "parameters": the request with every default filled in
};

// Parses a txt2img (img2img = false) or img2img request body against the loaded model
// (its default size, size multiple and CLIP depth). Throws RequestError.
ImageRequest parse_image_request(const nlohmann::json& body, bool img2img, const SdPipeline& pipe,
                                 const RequestDefaults& defaults);

// A sampler by A1111 name ("Euler a", "DPM++ 2M Karras", case-insensitive) or vksd name
// ("euler_a"); RequestError naming `field` otherwise.
SamplerKind parse_sampler_name(const std::string& name, const char* field);

// The finished images as the response's "images" entries: base64 PNGs carrying the A1111
// `parameters` text chunk, the same bytes `vksd generate` writes to a file.
std::string png_base64(const GenerateResult& r);

// The response's "info": a JSON object (sent as a string, as A1111 does) describing the run.
nlohmann::json info_json(const ImageRequest& req, const std::vector<GenerateResult>& results,
                         const std::string& model_name);

}  // namespace vksd::server
