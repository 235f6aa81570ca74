#include "runtime/bench/benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/graph.h"
#include "runtime/gpu/kernel.h"
#include "runtime/io/json.h"
#include "runtime/model/checkpoint.h"
#include "runtime/model/demo_model.h"
#include "runtime/model/random_checkpoint.h"
#include "runtime/model/sd1_layout.h"
#include "runtime/model/weights.h"
#include "runtime/nn/text_encoder.h"
#include "runtime/nn/unet.h"
#include "runtime/nn/vae.h"
#include "runtime/ops.h"
#include "runtime/ops/matrix_unit_check.h"
#include "runtime/text/tokenizer.h"

namespace fs = std::filesystem;

namespace vksd {

namespace {

using Progress = std::function<void(const std::string&)>;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Deterministic values in [-amp, amp) (inputs only; their values do not change timings).
std::vector<float> pseudo_random(size_t n, uint64_t seed, float amp) {
  std::vector<float> v(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& f : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f = amp * ((float)(x >> 40) * 0x1p-23f - 1.0f);
  }
  return v;
}

// Runs fn once (the first run) and then `repeats` times; fills the timing fields of row.
void time_runs(BenchRow& row, int repeats, const std::function<void()>& fn) {
  double t0 = now_s();
  fn();
  row.first_s = now_s() - t0;
  row.runs_s.clear();
  for (int r = 0; r < repeats; ++r) {
    t0 = now_s();
    fn();
    row.runs_s.push_back(now_s() - t0);
  }
  std::vector<double> s = row.runs_s.empty() ? std::vector<double>{row.first_s} : row.runs_s;
  std::sort(s.begin(), s.end());
  row.min_s = s.front();
  row.median_s = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
  if (row.gflop > 0 && row.median_s > 0) row.gflops = row.gflop / row.median_s;
  if (row.its == 0 && row.median_s > 0) row.its = 1.0 / row.median_s;
}

// GPU time per kernel (shader) of one profiled run, largest first.
std::vector<KernelTime> top_kernels(const std::vector<DispatchTiming>& tim, int top) {
  std::map<std::string, KernelTime> by;
  double total = 0;
  std::map<std::string, double> flops;
  for (auto& d : tim) {
    auto& k = by[d.kernel];
    k.kernel = d.kernel;
    k.dispatches++;
    k.ms += d.ms;
    flops[d.kernel] += d.flops;
    total += d.ms;
  }
  std::vector<KernelTime> v;
  for (auto& [name, k] : by) {
    k.share = total > 0 ? k.ms / total : 0;
    k.gflops = k.ms > 0 ? flops[name] / (k.ms * 1e6) : 0;
    v.push_back(k);
  }
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.ms > b.ms; });
  if ((int)v.size() > top) v.resize((size_t)top);
  return v;
}

bool wants(const BenchOptions& o, const char* part) {
  return std::find(o.parts.begin(), o.parts.end(), part) != o.parts.end();
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "";
}

std::string utc_now() {
  char buf[64];
  const std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

// The vocabulary for the generation part: the model's own, else the demo model's (a random
// checkpoint has none; any CLIP-style BPE whose ids fit the embedding table times the same).
std::string vocabulary_for(const BenchOptions& o, const ModelConfig& cfg) {
  if (!o.vocab_path.empty()) return o.vocab_path;
  try {
    return find_vocabulary(o.model_path, "", cfg.tokenizer_vocab);
  } catch (const Error&) {
    const fs::path demo = fs::path(default_model_path()).parent_path();
    for (const char* n : {"bpe_vocab.txt.gz", kClipBpeFileName})
      if (fs::exists(demo / n)) return (demo / n).string();
    throw;
  }
}

struct StepCounter : Observer {
  int steps = 0;
  void on_step(const StepEvent&) override { steps++; }
};

// The UNet config as JSON for the torch script (it builds weights/sd_modules.py's UNetModel).
std::string unet_json(const UNetConfig& u) {
  std::string mult, attn;
  for (size_t i = 0; i < u.channel_mult.size(); ++i) mult += (i ? "," : "") + std::to_string(u.channel_mult[i]);
  for (size_t i = 0; i < u.attention_levels.size(); ++i) attn += std::string(i ? "," : "") + (u.attention_levels[i] ? "true" : "false");
  return "{\"in_channels\":" + std::to_string(u.in_channels) + ",\"out_channels\":" + std::to_string(u.out_channels) +
         ",\"model_channels\":" + std::to_string(u.model_channels) + ",\"channel_mult\":[" + mult +
         "],\"num_res_blocks\":" + std::to_string(u.num_res_blocks) + ",\"attention_levels\":[" + attn +
         "],\"num_heads\":" + std::to_string(u.num_heads) + ",\"num_head_channels\":" + std::to_string(u.num_head_channels) +
         ",\"transformer_depth\":" + std::to_string(u.transformer_depth) +
         ",\"context_dim\":" + std::to_string(u.context_dim) +
         ",\"use_linear_in_transformer\":" + (u.use_linear_in_transformer ? "true" : "false") + "}";
}

std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

// Runs the torch script; returns its JSON result line, or "" with `why` set.
std::string run_torch(const BenchOptions& o, const std::string& model, const UNetConfig& u, int size, int batch,
                      int factor, std::string& why) {
  std::string script = o.torch_script;
  if (script.empty()) script = (fs::path(VKSD_SOURCE_DIR) / "bench" / "torch_unet_bench.py").string();
  if (!fs::exists(script)) return why = "no " + script, "";
  const int threads = o.torch_threads > 0 ? o.torch_threads : (int)std::max(1u, std::thread::hardware_concurrency());
  const std::string cmd = shell_quote(o.python) + " " + shell_quote(script) + " --ckpt " + shell_quote(model) +
                          " --latent " + std::to_string(size / factor) + " --batch " + std::to_string(batch) +
                          " --repeats " + std::to_string(std::max(1, o.repeats)) + " --threads " +
                          std::to_string(threads) + " --unet " + shell_quote(unet_json(u)) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return why = "cannot run " + o.python, "";
  std::string out, last;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) {
    out += buf;
    std::string line = buf;
    if (!line.empty() && line[0] == '{') last = line;
  }
  const int rc = pclose(p);
  if (rc != 0 || last.empty()) {
    // The last line of its output says why (e.g. "No module named 'torch'").
    std::string tail = out.substr(out.size() > 300 ? out.size() - 300 : 0);
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    const size_t nl = tail.rfind('\n');
    why = "torch script failed: " + (nl == std::string::npos ? tail : tail.substr(nl + 1));
    return "";
  }
  return last;
}

}  // namespace

double process_uptime_s() {
  // Field 22 of /proc/self/stat: start time in clock ticks after boot; /proc/uptime: now.
  const std::string stat = read_text("/proc/self/stat");
  const size_t rp = stat.rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream ss(stat.substr(rp + 2));
  std::string field;
  for (int i = 3; i <= 22 && ss >> field; ++i) {
  }
  const double start = std::atof(field.c_str()) / (double)sysconf(_SC_CLK_TCK);
  const double up = std::atof(read_text("/proc/uptime").c_str());
  return up > start ? up - start : 0;
}

std::string bench_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/vksd/bench";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/vksd/bench";
  return (fs::temp_directory_path() / "vksd-bench").string();
}

std::string ensure_random_sd15(const Progress& progress) {
  const std::string dir = bench_cache_dir();
  const std::string path = dir + "/sd15-random-f16.safetensors";
  if (fs::exists(path)) return path;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create the benchmark cache folder " + dir + ": " + ec.message());
  if (progress) progress("writing the random SD 1.5 checkpoint (once, about 2 GiB) to " + path);
  write_random_checkpoint(ModelConfig{}, path, DType::F16);  // written beside it, renamed when complete
  return path;
}

BenchReport run_benchmark(Context& ctx, const BenchOptions& o, const Progress& progress) {
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };
  for (auto& p : o.parts)
    if (p != "unet" && p != "text" && p != "vae" && p != "generate" && p != "matmul" && p != "torch")
      fail("bench: unknown part '" + p + "' (unet, text, vae, generate, matmul, torch)");
  if (o.repeats < 0) fail("bench: repeats must be >= 0");
  const double context_ready = process_uptime_s();
  // Numbers from a matrix unit that computes wrong results would mean nothing.
  if (std::string notice = ops::check_matrix_unit(ctx).notice; !notice.empty()) say("note: " + notice);

  BenchReport rep;
  rep.date = utc_now();
  rep.device = ctx.info().name;
  rep.driver = ctx.info().driver;
  rep.device_type = ctx.info().type;
  rep.model = o.model_path;
  rep.cpu = cpu_model();
  rep.threads = (int)std::thread::hardware_concurrency();
  if (std::istringstream la(read_text("/proc/loadavg")); !(la >> rep.loadavg[0] >> rep.loadavg[1] >> rep.loadavg[2]))
    rep.loadavg[0] = rep.loadavg[1] = rep.loadavg[2] = 0;

  const Checkpoint ckpt = Checkpoint::open(o.model_path, o.config_path);
  const ModelConfig& cfg = ckpt.config();
  const int factor = cfg.vae.downsample_factor();
  const int multiple = factor * (1 << ((int)cfg.unet.channel_mult.size() - 1));
  for (int s : o.sizes)
    if (s <= 0 || s % multiple) fail("bench: size " + std::to_string(s) + " must be a positive multiple of " + std::to_string(multiple));
  for (int b : o.unet_batches)
    if (b < 1 || b > 16) fail("bench: UNet batch " + std::to_string(b) + " must be 1..16");
  bool first_unet = true;
  std::map<std::string, double> best_mm;  // dtype -> GFLOP/s

  for (DType dt : o.dtypes) {
    const std::string dn = dtype_name(dt);
    if (wants(o, "matmul")) {
      say("matmul " + std::to_string(o.matmul_size) + "^3 " + dn);
      const int64_t n = o.matmul_size;
      Graph g(ctx);
      Tensor a = g.input({1, n, n}, dt), b = g.input({1, n, n}, dt);
      Tensor c = ops::matmul(a, b, false);
      g.keep(c);
      ctx.reset_memory_peak();
      g.compile();
      g.upload(a, pseudo_random((size_t)(n * n), 1, 1.f));
      g.upload(b, pseudo_random((size_t)(n * n), 2, 1.f));
      BenchRow row{"matmul", dn};
      row.gflop = g.flops() * 1e-9;
      time_runs(row, std::max(o.repeats, 3), [&] { g.run(); });
      row.gflops = row.gflop / row.min_s;  // the best the device does: min, like any peak figure
      row.peak_bytes = ctx.memory_peak();
      row.note = "GFLOP/s from the fastest run";
      best_mm[dn] = row.gflops;
      rep.rows.push_back(row);
    }

    if (wants(o, "unet")) {
      double t0 = now_s();
      const auto weights = load_weights(ctx, ckpt, kUNetPrefix, dt);
      const double weights_s = now_s() - t0;
      for (int size : o.sizes) {
        const int lh = size / factor;
        for (int batch : o.unet_batches) {
          say("unet " + dn + " " + std::to_string(size) + "x" + std::to_string(size) + " batch " + std::to_string(batch));
          ctx.reset_memory_peak();
          const KernelStats k0 = ctx.kernels().stats();
          t0 = now_s();
          nn::UNet unet(ctx, *weights, cfg.unet, batch, lh, lh, cfg.clip.max_length);
          const double compile_s = now_s() - t0;
          const KernelStats k1 = ctx.kernels().stats();
          unet.set_context(pseudo_random((size_t)batch * cfg.clip.max_length * cfg.unet.context_dim, 3, 1.f));
          const auto x = pseudo_random((size_t)batch * cfg.unet.in_channels * lh * lh, 4, 1.f);
          const std::vector<float> t((size_t)batch, 500.f);
          BenchRow row{"unet", dn, size, batch};
          row.gflop = unet.graph().flops() * 1e-9;
          time_runs(row, o.repeats, [&] { unet.forward(x, t); });
          row.its = 1.0 / row.median_s;
          row.peak_bytes = ctx.memory_peak();
          if (first_unet) {
            first_unet = false;
            StartupTimes& st = rep.startup;
            st.context_s = context_ready;
            st.weights_s = weights_s;
            st.compile_s = compile_s;
            st.pipelines = k1.pipelines - k0.pipelines;
            st.pipelines_s = k1.prepare_seconds - k0.prepare_seconds;
            st.first_forward_s = row.first_s;
            st.steady_forward_s = row.median_s;
            // This process did nothing but open the checkpoint before: its age after the first
            // forward is what a one-shot CLI run pays before its first step.
            st.to_first_step_s = context_ready + weights_s + compile_s + row.first_s;
          }
          if (batch == o.unet_batches.front() && o.top_kernels > 0) {
            nn::NetOptions po;
            po.profile = true;
            nn::UNet prof(ctx, *weights, cfg.unet, batch, lh, lh, cfg.clip.max_length, po);
            prof.set_context(pseudo_random((size_t)batch * cfg.clip.max_length * cfg.unet.context_dim, 3, 1.f));
            prof.forward(x, t);
            row.top = top_kernels(prof.graph().timings(), o.top_kernels);
          }
          rep.rows.push_back(row);
        }
      }
    }

    if (wants(o, "text")) {
      say("text encoder " + dn);
      ctx.reset_memory_peak();
      const auto weights = load_weights(ctx, ckpt, kClipPrefix, dt);
      nn::TextEncoder te(ctx, *weights, cfg.clip, 1);
      std::vector<int32_t> ids((size_t)cfg.clip.max_length, cfg.clip.pad_token);
      ids[0] = cfg.clip.bos_token;
      for (int i = 1; i <= 12; ++i) ids[(size_t)i] = 400 + 37 * i;  // a dozen ordinary tokens
      ids[13] = cfg.clip.eos_token;
      BenchRow row{"text", dn, 0, 1};
      te.encode(ids);
      row.gflop = te.flops() * 1e-9;
      time_runs(row, o.repeats, [&] { te.encode(ids); });
      row.peak_bytes = ctx.memory_peak();
      rep.rows.push_back(row);
    }

    if (wants(o, "vae")) {
      ctx.reset_memory_peak();
      const auto weights = load_weights(ctx, ckpt, kVaePrefix, dt);
      for (int size : o.sizes) {
        say("vae decode " + dn + " " + std::to_string(size) + "x" + std::to_string(size));
        const int lh = size / factor;
        ctx.reset_memory_peak();
        nn::VaeDecoder vae(ctx, *weights, cfg.vae, 1, lh, lh);
        const auto z = pseudo_random((size_t)cfg.vae.embed_dim * lh * lh, 5, 1.f);
        BenchRow row{"vae", dn, size, 1};
        row.gflop = vae.graph().flops() * 1e-9;
        time_runs(row, o.repeats, [&] { vae.decode(z); });
        row.peak_bytes = ctx.memory_peak();
        rep.rows.push_back(row);
      }
    }

    if (wants(o, "generate")) {
      PipelineOptions po;
      po.model_path = o.model_path;
      po.config_path = o.config_path;
      po.vocab_path = vocabulary_for(o, cfg);
      po.fp32 = dt == DType::F32;
      po.vae_tiling = PipelineOptions::VaeTiling::Off;
      for (int size : o.sizes) {
        say("generate " + dn + " " + std::to_string(size) + "x" + std::to_string(size) + ", " + std::to_string(o.steps) +
            " steps, guidance 7");
        ctx.reset_memory_peak();
        SdPipeline pipe(ctx, po);  // all three networks stay resident: the default mode
        GenerateParams p;
        p.prompt = "a red apple on a wooden table";
        p.width = p.height = size;
        p.steps = o.steps;
        p.cfg_scale = 7.0;
        p.sampler = SamplerKind::Euler;
        p.seed = 1;
        BenchRow row{"generate", dn, size, 2};
        row.steps = o.steps;
        double sample_s = 0;
        time_runs(row, std::min(o.repeats, 1), [&] {
          StepCounter sc;
          const GenerateResult r = pipe.generate(p, &sc);
          if (sc.steps != o.steps) fail("bench: generation ran " + std::to_string(sc.steps) + " steps");
          sample_s = r.sample_ms * 1e-3;
        });
        row.its = sample_s > 0 ? o.steps / sample_s : 0;  // of the last run
        row.note = "it/s of the sampling loop; seconds include text encoding and VAE decode";
        row.peak_bytes = ctx.memory_peak();
        rep.rows.push_back(row);
      }
    }
  }

  if (wants(o, "torch")) {
    for (int size : o.sizes)
      for (int batch : o.unet_batches) {
        say("torch CPU unet f32 " + std::to_string(size) + "x" + std::to_string(size) + " batch " + std::to_string(batch));
        std::string why;
        const std::string line = run_torch(o, o.model_path, cfg.unet, size, batch, factor, why);
        BenchRow row{"torch unet", "f32", size, batch};
        if (line.empty()) {
          row.note = why;
          rep.rows.push_back(row);
          break;
        }
        const Json j = Json::parse(line);
        rep.torch_version = j.string_or("torch", "");
        row.first_s = j.number_or("first_s", 0);
        for (auto& v : j.find("runs_s")->as_array("runs_s")) row.runs_s.push_back(v.as_number());
        std::vector<double> s = row.runs_s;
        std::sort(s.begin(), s.end());
        if (s.empty()) fail("bench: the torch script reported no runs");
        row.min_s = s.front();
        row.median_s = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
        row.its = 1.0 / row.median_s;
        row.note = "PyTorch " + rep.torch_version + " CPU, " + std::to_string((int)j.number_or("threads", 0)) + " threads";
        // Same FLOP count as our graph of the same shape (the UNet row's, when measured).
        for (auto& r : rep.rows)
          if (r.part == "unet" && r.size == size && r.batch == batch) {
            row.gflop = r.gflop;
            r.vs_torch = row.median_s / r.median_s;
          }
        if (row.gflop > 0) row.gflops = row.gflop / row.median_s;
        rep.rows.push_back(row);
      }
  }
  for (auto& r : rep.rows)
    if (r.part != "matmul" && r.gflops > 0 && best_mm.count(r.dtype)) r.vs_matmul = r.gflops / best_mm[r.dtype];
  for (auto& [name, v] : ctx.kernels().stats().by_shader) rep.pipeline_shaders.emplace_back(name, v.first, v.second);
  std::sort(rep.pipeline_shaders.begin(), rep.pipeline_shaders.end(),
            [](auto& a, auto& b) { return std::get<2>(a) > std::get<2>(b); });
  return rep;
}

namespace {
std::string num(double v, int prec = 3) {
  if (!std::isfinite(v)) return "0";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}
std::string exact(double v) {  // all significant digits (FLOP counts)
  if (!std::isfinite(v)) return "0";
  char b[64];
  std::snprintf(b, sizeof b, "%.12g", v);
  return b;
}
}  // namespace

std::string BenchReport::json() const {
  std::string s = "{\"date\":\"" + json_escape(date) + "\",\"device\":\"" + json_escape(device) + "\",\"driver\":\"" +
                  json_escape(driver) + "\",\"device_type\":\"" + json_escape(device_type) + "\",\"cpu\":\"" +
                  json_escape(cpu) + "\",\"threads\":" + std::to_string(threads) + ",\"loadavg\":[" + num(loadavg[0], 2) +
                  "," + num(loadavg[1], 2) + "," + num(loadavg[2], 2) + "],\"model\":\"" + json_escape(model) +
                  "\",\"torch\":\"" + json_escape(torch_version) + "\",\"rows\":[";
  for (size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& r = rows[i];
    s += std::string(i ? "," : "") + "{\"part\":\"" + json_escape(r.part) + "\",\"dtype\":\"" + r.dtype +
         "\",\"size\":" + std::to_string(r.size) + ",\"batch\":" + std::to_string(r.batch) +
         ",\"steps\":" + std::to_string(r.steps) + ",\"first_s\":" + exact(r.first_s) + ",\"min_s\":" + exact(r.min_s) +
         ",\"median_s\":" + exact(r.median_s) + ",\"runs_s\":[";
    for (size_t k = 0; k < r.runs_s.size(); ++k) s += (k ? "," : "") + exact(r.runs_s[k]);
    s += "],\"its\":" + exact(r.its) + ",\"gflop\":" + exact(r.gflop) + ",\"gflops\":" + exact(r.gflops) +
         ",\"vs_matmul\":" + num(r.vs_matmul, 3) + ",\"vs_torch\":" + num(r.vs_torch, 3) +
         ",\"peak_bytes\":" + std::to_string(r.peak_bytes) + ",\"note\":\"" + json_escape(r.note) + "\",\"top\":[";
    for (size_t k = 0; k < r.top.size(); ++k)
      s += std::string(k ? "," : "") + "{\"kernel\":\"" + json_escape(r.top[k].kernel) +
           "\",\"dispatches\":" + std::to_string(r.top[k].dispatches) + ",\"ms\":" + num(r.top[k].ms, 3) +
           ",\"share\":" + num(r.top[k].share, 4) + ",\"gflops\":" + num(r.top[k].gflops, 2) + "}";
    s += "]}";
  }
  const StartupTimes& st = startup;
  s += "],\"startup\":{\"to_first_step_s\":" + num(st.to_first_step_s) + ",\"context_s\":" + num(st.context_s) +
       ",\"weights_s\":" + num(st.weights_s) + ",\"compile_s\":" + num(st.compile_s) +
       ",\"pipelines_s\":" + num(st.pipelines_s) + ",\"pipelines\":" + std::to_string(st.pipelines) +
       ",\"first_forward_s\":" + num(st.first_forward_s) + ",\"steady_forward_s\":" + num(st.steady_forward_s) +
       "},\"pipeline_creation\":[";
  for (size_t i = 0; i < pipeline_shaders.size(); ++i) {
    const auto& [name, n, sec] = pipeline_shaders[i];
    s += std::string(i ? "," : "") + "{\"shader\":\"" + json_escape(name) + "\",\"pipelines\":" + std::to_string(n) +
         ",\"seconds\":" + num(sec, 4) + "}";
  }
  s += "]}";
  return s;
}

std::string BenchReport::table() const {
  std::string s = "vksd bench, " + date + "\ndevice: " + device + " (" + device_type + "), driver " + driver +
                  "\nCPU: " + cpu + ", " + std::to_string(threads) + " threads; load average " + num(loadavg[0], 2) +
                  " " + num(loadavg[1], 2) + " " + num(loadavg[2], 2) + " (other load slows wall-clock times; ratios "
                  "measured in the same run are steadier)\nmodel: " + model + "\n\n";
  s += "| part | dtype | size | batch | first s | min s | median s | it/s | GFLOP | GFLOP/s | vs best mm | torch/vksd | peak MiB |\n"
       "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (auto& r : rows) {
    s += "| " + r.part + (r.steps ? " " + std::to_string(r.steps) + " steps" : "") + " | " + r.dtype + " | " +
         (r.size ? std::to_string(r.size) : "") + " | " + std::to_string(r.batch) + " | " + num(r.first_s, 2) + " | " +
         num(r.min_s, 4) + " | " + num(r.median_s, 4) + " | " + num(r.its, 3) + " | " + num(r.gflop, 1) + " | " +
         num(r.gflops, 1) + " | " + (r.vs_matmul > 0 ? num(r.vs_matmul, 2) : "") + " | " +
         (r.vs_torch > 0 ? num(r.vs_torch, 2) : "") + " | " + (r.peak_bytes ? num(r.peak_bytes / 1048576.0, 0) : "") + " |" +
         (r.note.empty() ? "" : " " + r.note) + "\n";
  }
  for (auto& r : rows)
    if (!r.top.empty()) {
      s += "\ntop kernels, UNet " + r.dtype + " " + std::to_string(r.size) + "x" + std::to_string(r.size) + " batch " +
           std::to_string(r.batch) + " (GPU timestamps, one profiled forward):\n| kernel | dispatches | ms | share | GFLOP/s |\n|---|---:|---:|---:|---:|\n";
      for (auto& k : r.top)
        s += "| " + k.kernel + " | " + std::to_string(k.dispatches) + " | " + num(k.ms, 1) + " | " +
             num(100 * k.share, 1) + "% | " + num(k.gflops, 1) + " |\n";
    }
  const StartupTimes& st = startup;
  if (st.to_first_step_s > 0)
    s += "\nstart-up: " + num(st.to_first_step_s, 2) + " s from process start to the first UNet step done (process + Vulkan " +
         num(st.context_s, 2) + " s, UNet weights " + num(st.weights_s, 2) + " s, graph compile " + num(st.compile_s, 2) +
         " s of which " + std::to_string(st.pipelines) + " pipelines " + num(st.pipelines_s, 2) + " s, first forward " +
         num(st.first_forward_s, 2) + " s vs " + num(st.steady_forward_s, 2) + " s later)\n";
  if (!pipeline_shaders.empty()) {
    s += "pipeline creation by shader (seconds summed over threads):";
    for (size_t i = 0; i < pipeline_shaders.size() && i < 8; ++i) {
      const auto& [name, n, sec] = pipeline_shaders[i];
      s += " " + name + " " + std::to_string(n) + "x " + num(sec, 2) + " s" + (i + 1 < pipeline_shaders.size() && i < 7 ? "," : "");
    }
    s += "\n";
  }
  return s;
}

}  // namespace vksd
