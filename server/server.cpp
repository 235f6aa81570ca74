#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "runtime/vksd.h"
#include "server/a1111.h"
#include "server/base64.h"
#include "server/device_queue.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace vksd::server {

namespace {

// A loaded model and the job thread that owns its pipeline while a job runs.
struct Model {
  std::string path;
  std::unique_ptr<SdPipeline> pipe;
  std::unique_ptr<GenerationJob> job;
  Model(Context& ctx, const PipelineOptions& o)
      : path(o.model_path), pipe(std::make_unique<SdPipeline>(ctx, o)), job(std::make_unique<GenerationJob>(*pipe)) {}
  ~Model() { job.reset(); }  // joins the job thread before the pipeline goes
};

// The request on the device, for /progress and /interrupt.
struct Run {
  bool active = false;
  bool interrupted = false;
  int job_count = 0, job_no = 0;  // images of the request, the one being made
  std::chrono::steady_clock::time_point start;
  std::string timestamp;
  std::shared_ptr<Model> model;
};

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

const char* reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Internal Server Error" : "Error";
  }
}

// Errors as {"error", "field", "detail"}: the field says what to fix.
void send_error(httplib::Response& res, int status, const std::string& field, const std::string& detail) {
  json j = {{"error", reason(status)}, {"detail", detail}};
  if (!field.empty()) j["field"] = field;
  send_json(res, status, j);
}

json parse_body(const httplib::Request& req) {
  try {
    return req.body.empty() ? json::object() : json::parse(req.body);
  } catch (const json::exception& e) {
    throw RequestError("body", std::string("the request body is not valid JSON: ") + e.what());
  }
}

std::string timestamp_now() {
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", std::localtime(&now));
  return stamp;
}

}  // namespace

struct Server::Impl {
  Context& ctx;
  ServerOptions opts;
  httplib::Server http;
  DeviceQueue queue;
  mutable std::mutex mu;  // guards model, run, defaults
  std::shared_ptr<Model> model;
  Run run;
  RequestDefaults defaults;
  bool stopping = false;  // stop(): no new job starts

  Impl(Context& c, const ServerOptions& o) : ctx(c), opts(o), queue(o.queue_limit) {
    model = std::make_shared<Model>(ctx, opts.pipeline);
    routes();
  }

  std::shared_ptr<Model> current_model() const {
    std::lock_guard<std::mutex> lk(mu);
    return model;
  }

  void routes() {
    // Enough threads that every waiting request holds one and progress / interrupt still get
    // through; a request beyond the queue gets a thread too, and with it its 503.
    const size_t threads = (size_t)opts.queue_limit + 1 + 8;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(size_t(256) << 20);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opts.api_key.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("X-API-Key") == opts.api_key ||
          req.get_header_value("Authorization") == "Bearer " + opts.api_key)
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 401, "", "missing or wrong API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'");
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours, already JSON
      send_error(res, res.status, "", reason(res.status));
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, 500, "", what);
    });
    // Wraps a handler so that a RequestError becomes a 422 naming the field.
    auto guarded = [](auto fn) {
      return [fn](const httplib::Request& req, httplib::Response& res) {
        try {
          fn(req, res);
        } catch (const RequestError& e) {
          send_error(res, e.field == "body" && std::string(e.what()).find("not valid JSON") != std::string::npos ? 400 : 422,
                     e.field, e.what());
        }
      };
    };
    http.Post("/sdapi/v1/txt2img", guarded([this](const auto& q, auto& r) { generate(q, r, false); }));
    http.Post("/sdapi/v1/img2img", guarded([this](const auto& q, auto& r) { generate(q, r, true); }));
    http.Get("/sdapi/v1/progress", guarded([this](const auto& q, auto& r) { progress(q, r); }));
    http.Post("/sdapi/v1/interrupt", [this](const auto&, auto& r) { interrupt(r); });
    http.Get("/sdapi/v1/sd-models", [this](const auto&, auto& r) { send_json(r, 200, json::array({model_entry(*current_model())})); });
    http.Get("/sdapi/v1/samplers", [](const auto&, auto& r) { send_json(r, 200, samplers()); });
    http.Get("/sdapi/v1/options", [this](const auto&, auto& r) { send_json(r, 200, options()); });
    http.Post("/sdapi/v1/options", guarded([this](const auto& q, auto& r) { set_options(q, r); }));
  }

  static json model_entry(const Model& m) {
    const std::string name = m.pipe->model_name();
    return {{"title", name}, {"model_name", fs::path(name).stem().string()}, {"hash", nullptr}, {"sha256", nullptr},
            {"filename", fs::absolute(m.path).lexically_normal().string()}, {"config", nullptr}};
  }

  static json samplers() {
    json list = json::array();
    for (const std::string& cli : sampler_cli_names())
      list.push_back({{"name", sampler_a1111_name(parse_sampler(cli))}, {"aliases", {cli}}, {"options", json::object()}});
    return list;
  }

  json options() const {
    auto m = current_model();
    std::lock_guard<std::mutex> lk(mu);
    return {{"sd_model_checkpoint", m->pipe->model_name()},
            {"CLIP_stop_at_last_layers", defaults.clip_skip},
            {"samples_format", "png"}};
  }

  // txt2img and img2img: parse, wait for the device, make batch_size x n_iter images.
  void generate(const httplib::Request& req, httplib::Response& res, bool img2img) {
    const json body = parse_body(req);
    auto defaults_now = [this] {
      std::lock_guard<std::mutex> lk(mu);
      return defaults;
    };
    std::shared_ptr<Model> m = current_model();
    ImageRequest r = parse_image_request(body, img2img, *m->pipe, defaults_now());  // 422 before queueing

    std::optional<DeviceQueue::Ticket> ticket = queue.enter();
    if (!ticket) {
      send_error(res, 503, "", "the server is busy: " + std::to_string(opts.queue_limit) +
                                   " requests are already waiting; try again later");
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      if (stopping) {
        send_error(res, 503, "", "the server is shutting down");
        return;
      }
    }
    if (auto now = current_model(); now != m) {  // POST /options switched the model while we waited
      m = now;
      r = parse_image_request(body, img2img, *m->pipe, defaults_now());
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      run = Run{true, false, r.images(), 0, std::chrono::steady_clock::now(), timestamp_now(), m};
    }
    std::vector<GenerateResult> results;
    std::string failure;
    bool interrupted = false;
    try {
      for (int i = 0; i < r.images(); ++i) {
        GenerateParams p = r.params;
        p.seed = r.params.seed + (uint64_t)i;
        {
          // Started under the lock, so that an interrupt either sees this job or stops the loop.
          std::lock_guard<std::mutex> lk(mu);
          if (run.interrupted) break;
          run.job_no = i;
          m->job->start(p);
        }
        m->job->wait();
        const JobState s = m->job->state();
        if (s == JobState::Done) {
          results.push_back(*m->job->result());
        } else if (s == JobState::Failed) {
          failure = m->job->progress().error;
          break;
        } else {
          break;  // cancelled by /interrupt
        }
      }
    } catch (const std::exception& e) {  // start() refused: reported like a failed job
      failure = e.what();
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      interrupted = run.interrupted;
      run = Run{};
    }
    ticket.reset();  // the next request may start while this one's PNGs are encoded
    if (!failure.empty()) {
      send_error(res, 500, "", "generation failed: " + failure);
      return;
    }
    json images = json::array();
    for (const auto& g : results) images.push_back(png_base64(g));
    json info = info_json(r, results, m->pipe->model_name());
    info["interrupted"] = interrupted;
    send_json(res, 200, {{"images", images}, {"parameters", r.echo}, {"info", info.dump()}});
  }

  void progress(const httplib::Request& req, httplib::Response& res) {
    Run now;
    {
      std::lock_guard<std::mutex> lk(mu);
      now = run;
    }
    json state = {{"skipped", false},          {"interrupted", now.interrupted},
                  {"job", ""},                 {"job_count", now.active ? now.job_count : 0},
                  {"job_timestamp", now.timestamp}, {"job_no", now.job_no},
                  {"sampling_step", 0},        {"sampling_steps", 0}};
    json out = {{"progress", 0.0}, {"eta_relative", 0.0}, {"state", state}, {"current_image", nullptr}, {"textinfo", nullptr}};
    if (!now.active) {
      send_json(res, 200, out);
      return;
    }
    GenerationJob& job = *now.model->job;
    const JobProgress jp = job.progress();
    const double within = jp.steps_total > 0 ? (double)jp.steps_done / jp.steps_total : 0.0;
    const double frac = std::min(1.0, (now.job_no + within) / std::max(1, now.job_count));
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - now.start).count();
    out["progress"] = frac;
    out["eta_relative"] = frac > 0 ? elapsed / frac - elapsed : 0.0;  // A1111's estimate
    out["state"]["job"] = "job " + std::to_string(now.job_no + 1) + "/" + std::to_string(now.job_count);
    out["state"]["sampling_step"] = jp.steps_done;
    out["state"]["sampling_steps"] = jp.steps_total;
    out["textinfo"] = jp.stage;
    const bool want_image = req.get_param_value("skip_current_image") != "true";
    if (want_image && jp.steps_done > 0 && (jp.state == JobState::Running || jp.state == JobState::Paused)) {
      try {
        // The newest step's x0 prediction through the model's linear latent -> RGB map, the
        // preview `vksd view` and --save-steps show, at the image's size.
        auto rec = job.record_ptr(jp.steps_done - 1);
        const SdPipeline& pipe = *now.model->pipe;
        const std::vector<double> x0(rec->denoised.begin(), rec->denoised.end());
        Image im = latent_preview(x0, rec->height, rec->width, pipe.config().preview);
        im = upscale_nearest(im, pipe.config().vae.downsample_factor());
        out["current_image"] = base64_encode(encode_png(im));
      } catch (const Error&) {
        // The job moved on to its next image between progress() and record_ptr(): no preview now.
      }
    }
    send_json(res, 200, out);
  }

  // Cancels the request on the device at its next step; no effect between its images (the
  // flag stops the next one from starting).
  void interrupt_locked() {
    if (run.active) {
      run.interrupted = true;
      run.model->job->cancel();
    }
  }

  void interrupt(httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lk(mu);
      interrupt_locked();
    }
    send_json(res, 200, json::object());
  }

  // Stopping waits for the HTTP threads, so nothing may keep them long: the running job is
  // interrupted and requests still in line get 503 instead of their turn.
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stopping = true;
      interrupt_locked();
    }
    http.stop();
  }

  void set_options(const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req);
    if (!body.is_object()) throw RequestError("body", "the request body must be a JSON object");
    std::shared_ptr<Model> m = current_model();
    std::optional<int> clip_skip;
    if (auto it = body.find("CLIP_stop_at_last_layers"); it != body.end() && !it->is_null()) {
      const int layers = m->pipe->config().clip.layers;
      if (!it->is_number_integer() || it->get<long long>() < 1 || it->get<long long>() > layers)
        throw RequestError("CLIP_stop_at_last_layers",
                           "CLIP_stop_at_last_layers must be an integer within [1, " + std::to_string(layers) + "] (got " + it->dump() + ")");
      clip_skip = it->get<int>();
    }
    if (auto it = body.find("sd_model_checkpoint"); it != body.end() && !it->is_null()) {
      if (!it->is_string()) throw RequestError("sd_model_checkpoint", "sd_model_checkpoint must be a string (got " + it->dump() + ")");
      const std::string want = it->get<std::string>();
      const json entry = model_entry(*m);
      if (want != entry["title"] && want != entry["model_name"] && want != entry["filename"] && want != m->path) {
        // Another model: a checkpoint path on the server's machine, loaded when the device is free.
        if (!fs::exists(want))
          throw RequestError("sd_model_checkpoint", "sd_model_checkpoint: no such model on the server: " + want +
                                                        " (give the path of a .safetensors file or diffusers folder)");
        std::optional<DeviceQueue::Ticket> ticket = queue.enter();
        if (!ticket) {
          send_error(res, 503, "", "the server is busy; try again later");
          return;
        }
        PipelineOptions po = opts.pipeline;
        po.model_path = want;
        po.config_path.clear();
        std::shared_ptr<Model> loaded;
        try {
          loaded = std::make_shared<Model>(ctx, po);
        } catch (const Error& e) {
          throw RequestError("sd_model_checkpoint", std::string("cannot load ") + want + ": " + e.what());
        }
        std::lock_guard<std::mutex> lk(mu);
        model = loaded;
        defaults.clip_skip = std::min(defaults.clip_skip, loaded->pipe->config().clip.layers);
      }
    }
    if (clip_skip) {
      std::lock_guard<std::mutex> lk(mu);
      defaults.clip_skip = *clip_skip;
    }
    send_json(res, 200, json::object());
  }
};

Server::Server(Context& ctx, const ServerOptions& opts) : impl_(std::make_unique<Impl>(ctx, opts)) {}
Server::~Server() = default;

int Server::bind() {
  const auto& o = impl_->opts;
  const int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host) : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port < 0) fail("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (address in use, or not an address of this machine)");
  return port;
}

void Server::run() { impl_->http.listen_after_bind(); }
void Server::stop() { impl_->stop(); }
std::string Server::model_name() const { return impl_->current_model()->pipe->model_name(); }

}  // namespace vksd::server
