#include "runtime/diffusion/peak_memory.h"

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace vksd {

namespace {

std::string absolute(const std::string& p) {
  std::error_code ec;
  fs::path a = fs::weakly_canonical(fs::absolute(p, ec), ec);
  return ec ? p : a.string();
}

// Tabs and newlines would break the line format; paths and device names do not need them.
std::string clean(std::string s) {
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}

bool same_kind(const PeakMemoryRecord& a, const PeakMemoryRecord& b) {
  return a.model == b.model && a.width == b.width && a.height == b.height && a.dtype == b.dtype &&
         a.lowvram == b.lowvram && a.batch == b.batch && a.device == b.device;
}

std::vector<PeakMemoryRecord> read_all() {
  std::vector<PeakMemoryRecord> v;
  std::ifstream f(peak_memory_file());
  for (std::string line; std::getline(f, line);) {
    std::vector<std::string> c;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, '\t');) c.push_back(x);
    if (c.size() != 9 && c.size() != 10) continue;  // not ours, or damaged: skipped (9: no stages column)
    PeakMemoryRecord r;
    r.model = c[0];
    r.width = std::atoi(c[1].c_str());
    r.height = std::atoi(c[2].c_str());
    r.dtype = c[3];
    r.lowvram = c[4] == "lowvram";
    r.batch = std::atoi(c[5].c_str());
    r.peak_bytes = std::strtoull(c[6].c_str(), nullptr, 10);
    r.device = c[7];
    r.date = c[8];
    if (c.size() == 10) r.stages = c[9];
    v.push_back(r);
  }
  return v;
}

}  // namespace

std::string peak_memory_file() {
  if (const char* e = std::getenv("VKSD_PEAK_MEMORY_FILE"); e && *e) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/vksd/peak_memory.tsv";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/vksd/peak_memory.tsv";
  return "";
}

void record_peak_memory(const PeakMemoryRecord& in) {
  const std::string path = peak_memory_file();
  if (path.empty()) return;
  PeakMemoryRecord r = in;
  r.model = clean(absolute(r.model));
  r.device = clean(r.device);
  r.stages = clean(r.stages);
  if (r.date.empty()) {
    char buf[32];
    const std::time_t t = std::time(nullptr);
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
    r.date = buf;
  }
  std::vector<PeakMemoryRecord> all = read_all();
  std::erase_if(all, [&](const PeakMemoryRecord& x) { return same_kind(x, r); });
  all.push_back(r);
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  // Written beside and renamed: a concurrent reader sees the old file or the new one.
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream f(tmp);
    for (auto& x : all)
      f << x.model << '\t' << x.width << '\t' << x.height << '\t' << x.dtype << '\t' << (x.lowvram ? "lowvram" : "resident")
        << '\t' << x.batch << '\t' << x.peak_bytes << '\t' << x.device << '\t' << x.date << '\t' << x.stages << '\n';
    if (!f) {
      fs::remove(tmp, ec);
      return;
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) fs::remove(tmp, ec);
}

std::vector<PeakMemoryRecord> peak_memory_records(const std::string& model) {
  const std::string m = absolute(model);
  std::vector<PeakMemoryRecord> v;
  for (auto& r : read_all())
    if (r.model == m) v.push_back(r);
  return v;
}

}  // namespace vksd
