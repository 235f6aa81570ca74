// `vksd serve`: an HTTP server speaking the AUTOMATIC1111 web API (/sdapi/v1/...), so that the
// front-ends, plug-ins and scripts written for A1111 drive vksd unchanged.
//
// One model stays loaded; one job runs on the device at a time (the runtime's GenerationJob)
// and further requests wait in a bounded first-come-first-served line (DeviceQueue; a full line
// is answered 503). /sdapi/v1/progress reads the running job's timeline without waiting for the
// device, so it shows the live x0 preview while a job runs; /sdapi/v1/interrupt cancels at the
// next step. HTTP is cpp-httplib's, JSON nlohmann-json's.
#pragma once
#include <memory>
#include <string>

#include "runtime/vksd.h"

namespace vksd::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 7860;            // A1111's; 0 = any free port (bound_port() says which)
  std::string api_key;        // non-empty: every request must send it (X-API-Key or Authorization: Bearer)
  int queue_limit = 8;        // requests that may wait for the device; one more is refused with 503
  PipelineOptions pipeline;   // the model, loaded once by the constructor
};

class Server {
 public:
  // Loads the model (slow) on ctx, which must outlive the server.
  Server(Context& ctx, const ServerOptions& opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port; an Error when that fails. Returns the port (useful with port 0).
  int bind();
  // Serves until stop() (from any thread, or a signal handler thread). bind() first.
  void run();
  void stop();
  std::string model_name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vksd::server
