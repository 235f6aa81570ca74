#include "runtime/model/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/gpu/memory.h"
#include "runtime/io/json.h"

namespace vksd {

namespace {

std::string quoted(const std::string& s) { return "\"" + json_escape(s) + "\""; }

class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path), tmp_(path + ".tmp-" + std::to_string((long)::getpid())) {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail("cannot write '" + path_ + "': " + std::strerror(errno));
  }
  ~OutFile() {  // not committed: an exception is on its way; leave nothing behind
    if (f_) std::fclose(f_);
    if (!committed_) std::remove(tmp_.c_str());
  }
  void write(const void* p, size_t n) {
    if (std::fwrite(p, 1, n, f_) != n) fail("cannot write '" + path_ + "': " + std::strerror(errno));
  }
  void commit() {
    bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
    ok = std::fclose(f_) == 0 && ok;
    f_ = nullptr;
    if (!ok || std::rename(tmp_.c_str(), path_.c_str()) != 0)
      fail("cannot write '" + path_ + "': " + std::strerror(errno));
    committed_ = true;
  }

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
  bool committed_ = false;
};

}  // namespace

void write_safetensors(const std::string& path, const std::vector<StOutTensor>& tensors, const TensorFiller& fill,
                       const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) header += (first ? "" : ",") + quoted(k) + ":" + quoted(v), first = false;
    header += "},";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.dtype != DType::F32 && t.dtype != DType::F16) fail("write_safetensors: " + t.name + ": only F32/F16 are written");
    const uint64_t bytes = (uint64_t)shape_numel(t.shape) * dtype_size(t.dtype);
    std::string shape = "[";
    for (size_t d = 0; d < t.shape.size(); ++d) shape += (d ? "," : "") + std::to_string(t.shape[d]);
    header += (i ? "," : "") + quoted(t.name) + ":{\"dtype\":\"" + (t.dtype == DType::F16 ? "F16" : "F32") +
              "\",\"shape\":" + shape + "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // keep the data area 8-byte aligned, as the format suggests

  OutFile out(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = (uint8_t)((uint64_t)header.size() >> (8 * i));
  out.write(len, 8);
  out.write(header.data(), header.size());
  std::vector<float> values;
  std::vector<uint16_t> halves;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    values.assign((size_t)shape_numel(t.shape), 0.f);
    fill(i, values);
    if (values.size() != (size_t)shape_numel(t.shape)) fail("write_safetensors: " + t.name + ": filler changed the size");
    if (t.dtype == DType::F16) {
      halves.resize(values.size());
      for (size_t k = 0; k < values.size(); ++k) halves[k] = f32_to_f16(values[k]);
      out.write(halves.data(), halves.size() * 2);
    } else {
      out.write(values.data(), values.size() * 4);
    }
  }
  out.commit();
}

}  // namespace vksd
