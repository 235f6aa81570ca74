// `vksd serve`: the AUTOMATIC1111 web API over HTTP (server/server.h), for the front-ends,
// plug-ins and scripts that speak it. This file is only flags, the model choice and signals.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include "cli/args.h"
#include "cli/command.h"
#include "runtime/vksd.h"
#include "server/server.h"

using vksd::fail;

namespace {

void usage() {
  std::printf(
      "usage: vksd serve [options]\n"
      "\n"
      "Serves the AUTOMATIC1111 web API (POST /sdapi/v1/txt2img, /sdapi/v1/img2img, GET\n"
      "/sdapi/v1/progress with a live preview, POST /sdapi/v1/interrupt, /sdapi/v1/sd-models,\n"
      "/sdapi/v1/samplers, /sdapi/v1/options), so that tools written for A1111 use vksd. The model\n"
      "is loaded once; one image is made at a time and other requests wait their turn.\n"
      "See docs/server.md.\n"
      "\n"
      "  -m, --model PATH     SD 1.x checkpoint or diffusers folder (default: as vksd generate:\n"
      "                       $VKSD_MODEL, else the demo model)\n"
      "      --config FILE    vksd model config JSON (docs/model-config.md)\n"
      "      --vocab FILE     CLIP vocabulary (as vksd generate)\n"
      "      --host ADDR      address to listen on (default 127.0.0.1: this machine only)\n"
      "      --port N         TCP port (default 7860, A1111's; 0 = any free port, printed)\n"
      "      --api-key KEY    require 'X-API-Key: KEY' or 'Authorization: Bearer KEY' on every request\n"
      "                       (strongly advised with a --host other than loopback)\n"
      "      --queue N        requests that may wait for the device (default 8); more get 503\n"
      "      --lowvram        one network on the GPU at a time (as vksd generate)\n"
      "      --fp32           fp32 weights and activations\n"
      "\n"
      "Ctrl+C (SIGINT) or SIGTERM stops the server.\n");
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

int cmd_serve(int argc, char** argv) {
  vksd::server::ServerOptions o;
  std::string model;
  bool fp32 = false;
  vksd::cli::FlagReader f(argc, argv);
  while (f.next()) {
    if (f.is("-h", "--help")) {
      usage();
      return 0;
    } else if (f.is("-m", "--model")) model = f.val();
    else if (f.is(nullptr, "--config")) o.pipeline.config_path = f.val();
    else if (f.is(nullptr, "--vocab")) o.pipeline.vocab_path = f.val();
    else if (f.is(nullptr, "--host")) o.host = f.val();
    else if (f.is(nullptr, "--port")) o.port = (int)f.int_val();
    else if (f.is(nullptr, "--api-key")) o.api_key = f.val();
    else if (f.is(nullptr, "--queue")) o.queue_limit = (int)f.int_val();
    else if (f.is_switch("--lowvram")) o.pipeline.lowvram = true;
    else if (f.is_switch("--fp32")) fp32 = true;
    else fail("unknown option '" + f.arg() + "' (see vksd serve --help)");
  }
  if (o.port < 0 || o.port > 65535) fail("--port must be within [0, 65535] (got " + std::to_string(o.port) + ")");
  if (o.queue_limit < 0 || o.queue_limit > 1000) fail("--queue must be within [0, 1000]");
  if (o.host.empty()) fail("--host must not be empty");
  o.pipeline.model_path = vksd::resolve_model_path(model);
  o.pipeline.fp32 = fp32;
  if (!is_loopback(o.host) && o.api_key.empty())
    std::fprintf(stderr,
                 "vksd serve: warning: listening on %s without --api-key: anyone who can reach this address can "
                 "use the GPU and read your prompts\n",
                 o.host.c_str());

  // SIGINT / SIGTERM go to one thread that stops the server; every other thread (HTTP workers,
  // the job thread, driver threads) inherits the blocked mask. A vanished client must not kill
  // the process with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  vksd::ContextOptions co = vksd::ContextOptions::from_env();
  if (fp32) co.prefer_fp16 = false;
  vksd::Context ctx(co);
  vksd::server::Server server(ctx, o);
  const int port = server.bind();
  std::thread([&server, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "vksd serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.stop();
  }).detach();
  std::fprintf(stderr, "vksd serve: model %s on %s; listening on http://%s:%d (A1111 API under /sdapi/v1)\n",
               server.model_name().c_str(), ctx.info().name.c_str(), o.host.c_str(), port);
  std::fflush(stderr);
  server.run();
  return 0;
}

}  // namespace

VKSD_COMMAND(serve, "serve the AUTOMATIC1111 web API over HTTP (txt2img, img2img, live progress)", cmd_serve);
