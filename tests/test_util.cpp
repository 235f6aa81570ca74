#include "tests/test_util.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sys/wait.h>

#include "runtime/diffusion/pipeline.h"
#include "runtime/error.h"
#include "runtime/model/demo_model.h"
#include "runtime/gpu/memory.h"

namespace vksd::test {

static std::unique_ptr<Context> g_ctx;
static uint64_t g_at_shutdown = 0;

Context& ctx() {
  if (!g_ctx) g_ctx = std::make_unique<Context>(ContextOptions::from_env());
  return *g_ctx;
}
uint64_t validation_messages_so_far() { return g_ctx ? g_ctx->validation_messages() : 0; }
void shutdown_context() {
  if (!g_ctx) return;
  // Destroying the device reports leaked child objects through the messenger, still alive here.
  g_ctx.reset();
  g_at_shutdown = Context::process_validation_messages();
}
uint64_t validation_messages_at_shutdown() { return g_at_shutdown; }

std::vector<float> randn(size_t n, uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
std::vector<float> randu(size_t n, uint64_t seed, float lo, float hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double rel_l2(const std::vector<float>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = (double)a[i] - b[i];
    if (!std::isfinite(a[i])) return INFINITY;
    num += d * d;
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}
double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  return rel_l2(a, std::vector<double>(b.begin(), b.end()));
}
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, (double)std::fabs(a[i] - b[i]));
  return a.size() == b.size() ? m : INFINITY;
}

std::vector<float> round_to(DType dt, std::vector<float> v) {
  if (dt == DType::F16)
    for (auto& x : v) x = f16_to_f32(f32_to_f16(x));
  return v;
}

std::string shared_dir() {
  if (const char* e = std::getenv("VKSD_SHARED_DIR")) return e;
#ifdef VKSD_SHARED_DIR
  return VKSD_SHARED_DIR;
#else
  return "../shared";
#endif
}
std::string vectors_dir() { return shared_dir() + "/vectors/tiny"; }
std::string vksd_binary() {
#ifdef VKSD_BINARY_DIR
  std::filesystem::path p = std::filesystem::path(VKSD_BINARY_DIR) / "vksd";
#else
  std::error_code ec;
  std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "vksd";
#endif
  return std::filesystem::exists(p) ? p.string() : std::string();
}
ToolRun run_vksd(const std::string& args, const std::string& env) {
  ToolRun r;
  std::string cmd = env + (env.empty() ? "" : " ") + "'" + vksd_binary() + "' " + args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  int st = pclose(f);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}
std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}
bool shared_available() { return std::filesystem::exists(vectors_dir() + "/index.json"); }

Npy load_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open " + path);
  char magic[6];
  f.read(magic, 6);
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path + ": not a .npy file");
  uint8_t ver[2];
  f.read((char*)ver, 2);
  uint32_t hlen = 0;
  if (ver[0] == 1) {
    uint16_t h;
    f.read((char*)&h, 2);
    hlen = h;
  } else {
    f.read((char*)&hlen, 4);
  }
  std::string header(hlen, ' ');
  f.read(header.data(), hlen);
  auto field = [&](const std::string& key) {
    auto p = header.find("'" + key + "'");
    if (p == std::string::npos) fail(path + ": header lacks " + key);
    return header.substr(header.find(':', p) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  if (field("fortran_order").find("True") < field("fortran_order").find(',')) fail(path + ": fortran order");
  std::string sh = field("shape");
  sh = sh.substr(sh.find('(') + 1, sh.find(')') - sh.find('(') - 1);
  Npy r;
  size_t pos = 0;
  while (pos < sh.size()) {
    size_t next = sh.find(',', pos);
    std::string tok = sh.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (tok.find_first_of("0123456789") != std::string::npos) r.shape.push_back(std::stoll(tok));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  size_t n = 1;
  for (auto d : r.shape) n *= (size_t)d;
  r.data.resize(n);
  if (descr == "<f4") {
    f.read((char*)r.data.data(), (std::streamsize)(n * 4));
  } else if (descr == "<i4") {
    std::vector<int32_t> v(n);
    f.read((char*)v.data(), (std::streamsize)(n * 4));
    for (size_t i = 0; i < n; ++i) r.data[i] = (float)v[i];
  } else if (descr == "<i8") {
    std::vector<int64_t> v(n);
    f.read((char*)v.data(), (std::streamsize)(n * 8));
    for (size_t i = 0; i < n; ++i) r.data[i] = (float)v[i];
  } else if (descr == "<f8") {
    std::vector<double> v(n);
    f.read((char*)v.data(), (std::streamsize)(n * 8));
    for (size_t i = 0; i < n; ++i) r.data[i] = (float)v[i];
  } else {
    fail(path + ": unsupported dtype " + descr);
  }
  if (!f) fail(path + ": truncated");
  return r;
}

}  // namespace vksd::test

namespace vksd::test {

std::string demo_model_path() {
  return default_model_path(nullptr, {std::string(VKSD_SOURCE_DIR) + "/" + kDemoModelDir});
}

std::unique_ptr<SdPipeline> demo_pipeline() {
  PipelineOptions o;
  o.model_path = demo_model_path();
  return std::make_unique<SdPipeline>(ctx(), o);
}

void with_emulated_matrix_unit(const std::function<void()>& body, uint32_t subgroups, uint32_t blocks) {
  Context& c = ctx();
  const DeviceProfile chosen = c.profile();
  DeviceProfile p = DeviceProfile::choose(c.info(), [](const char* name) -> const char* {
    return std::string(name) == "VKSD_MATRIX_UNIT" ? "emulated" : nullptr;
  });
  p.compact_conv_below_flops = p.compact_matmul_below_flops = 0;
  p.matrix_workgroup = subgroups * p.subgroup;
  p.matrix_blocks_per_subgroup = blocks;
  c.set_profile(p);
  try {
    body();
  } catch (...) {
    c.set_profile(chosen);
    throw;
  }
  c.set_profile(chosen);
}

}  // namespace vksd::test
