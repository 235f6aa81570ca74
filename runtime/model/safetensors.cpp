#include "runtime/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/error.h"
#include "runtime/io/json.h"
#include "runtime/gpu/memory.h"

namespace vksd {

size_t st_dtype_size(StDType t) {
  switch (t) {
    case StDType::F32: return 4;
    case StDType::F16: return 2;
    case StDType::BF16: return 2;
    case StDType::I64: return 8;
    case StDType::I32: return 4;
  }
  return 0;
}

const char* st_dtype_name(StDType t) {
  switch (t) {
    case StDType::F32: return "F32";
    case StDType::F16: return "F16";
    case StDType::BF16: return "BF16";
    case StDType::I64: return "I64";
    case StDType::I32: return "I32";
  }
  return "?";
}

static bool parse_dtype(const std::string& s, StDType& out) {
  for (StDType t : {StDType::F32, StDType::F16, StDType::BF16, StDType::I64, StDType::I32})
    if (s == st_dtype_name(t)) {
      out = t;
      return true;
    }
  return false;
}

static uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A JSON number that is an exact non-negative integer (JSON numbers are doubles: 2^53 max).
static bool is_count(const Json& j) {
  if (!j.is_number()) return false;
  double v = j.as_number();
  return v >= 0 && v <= 9007199254740992.0 && v == std::floor(v);
}

static std::string span_str(uint64_t a, uint64_t b) {
  std::string r = "[";
  r += std::to_string(a);
  r += ",";
  r += std::to_string(b);
  r += ")";
  return r;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  auto bad = [&](const std::string& what) -> void { fail(path_ + ": " + what); };
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail(path_ + ": cannot open: " + std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) bad(std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) bad("not a regular file");
    size_ = (uint64_t)st.st_size;
    if (size_ < 8)
      bad("file is " + std::to_string(size_) + " bytes, too short for the 8-byte safetensors header length");
    void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (m == MAP_FAILED) bad(std::string("mmap failed: ") + std::strerror(errno));
    map_ = (const uint8_t*)m;

    uint64_t header_len = read_u64_le(map_);
    if (header_len > size_ - 8)
      bad("header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(size_) +
          " bytes): truncated or not a safetensors file");
    data_start_ = 8 + header_len;
    const uint64_t data_size = size_ - data_start_;

    Json header;
    try {
      header = Json::parse(std::string_view((const char*)map_ + 8, header_len));
    } catch (const Error& e) {
      bad(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) bad("header is not a JSON object");

    for (const auto& [name, v] : header.as_object()) {
      if (name == "__metadata__") {
        if (!v.is_object()) bad("__metadata__ is not an object");
        for (const auto& [k, s] : v.as_object()) {
          if (!s.is_string()) bad("__metadata__ entry '" + k + "' is not a string");
          metadata_[k] = s.as_string();
        }
        continue;
      }
      auto tbad = [&](const std::string& what) { bad("tensor '" + name + "': " + what); };
      if (!v.is_object()) tbad("header entry is not an object");
      for (const auto& [k, unused] : v.as_object())
        if (k != "dtype" && k != "shape" && k != "data_offsets") tbad("unknown header field '" + k + "'");
      const Json* jd = v.find("dtype");
      const Json* js = v.find("shape");
      const Json* jo = v.find("data_offsets");
      if (!jd || !js || !jo) tbad("header entry needs dtype, shape and data_offsets");

      StTensor t;
      t.name = name;
      if (!jd->is_string()) tbad("dtype is not a string");
      if (!parse_dtype(jd->as_string(), t.dtype))
        tbad("unknown or unsupported dtype '" + jd->as_string() + "' (vksd reads F32, F16, BF16, I64, I32)");

      if (!js->is_array()) tbad("shape is not an array");
      // numel * dtype size, guarding against overflow from absurd shapes.
      uint64_t bytes = st_dtype_size(t.dtype);
      bool overflow = false;
      for (const Json& d : js->as_array()) {
        if (!is_count(d)) tbad("shape entries must be non-negative integers");
        int64_t n = (int64_t)d.as_number();
        t.shape.push_back(n);
        if (n != 0 && bytes > std::numeric_limits<uint64_t>::max() / (uint64_t)n) overflow = true;
        else bytes *= (uint64_t)n;
      }

      if (!jo->is_array() || jo->as_array().size() != 2) tbad("data_offsets is not a [begin, end] pair");
      for (const Json& o : jo->as_array())
        if (!is_count(o)) tbad("data_offsets must be non-negative integers");
      t.begin = (uint64_t)jo->as_array()[0].as_number();
      t.end = (uint64_t)jo->as_array()[1].as_number();
      if (t.begin > t.end) tbad("data_offsets " + span_str(t.begin, t.end) + " begin after end");
      if (t.end > data_size)
        tbad("data span " + span_str(t.begin, t.end) + " lies outside the data area (" + std::to_string(data_size) +
             " bytes)");
      if (overflow || t.end - t.begin != bytes)
        tbad("shape " + shape_str(t.shape) + " x " + st_dtype_name(t.dtype) + " needs " +
             (overflow ? std::string("more than 2^64") : std::to_string(bytes)) + " bytes but its data span " +
             span_str(t.begin, t.end) + " holds " + std::to_string(t.end - t.begin));
      index_[name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }

    // Spans must not overlap: a writer bug that would silently alias two tensors.
    std::vector<const StTensor*> by_begin;
    for (const auto& t : tensors_)
      if (t.end > t.begin) by_begin.push_back(&t);
    std::sort(by_begin.begin(), by_begin.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < by_begin.size(); ++i)
      if (by_begin[i]->begin < by_begin[i - 1]->end)
        bad("tensor '" + by_begin[i]->name + "': data span " + span_str(by_begin[i]->begin, by_begin[i]->end) +
            " overlaps tensor '" + by_begin[i - 1]->name + "' " +
            span_str(by_begin[i - 1]->begin, by_begin[i - 1]->end));
  } catch (...) {
    if (map_) ::munmap((void*)map_, size_);
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap((void*)map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

const StTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const StTensor& SafetensorsFile::at(const std::string& name) const {
  const StTensor* t = find(name);
  if (!t) fail(path_ + ": no tensor '" + name + "'");
  return *t;
}

std::span<const uint8_t> SafetensorsFile::bytes(const StTensor& t) const {
  return {map_ + data_start_ + t.begin, (size_t)(t.end - t.begin)};
}

// Converts n consecutive values of type Raw at p to float. The data area need not be aligned
// (the header length is arbitrary): each value is read through memcpy.
template <class Raw, class Convert>
static void unaligned_to_f32(const uint8_t* p, size_t n, float* out, Convert convert) {
  for (size_t i = 0; i < n; ++i) {
    Raw v;
    std::memcpy(&v, p + sizeof(Raw) * i, sizeof(Raw));
    out[i] = convert(v);
  }
}

void SafetensorsFile::to_f32(const StTensor& t, float* out) const {
  const uint8_t* p = bytes(t).data();
  const size_t n = (size_t)t.numel();
  switch (t.dtype) {
    case StDType::F32:
      std::memcpy(out, p, n * 4);
      break;
    case StDType::F16:
      unaligned_to_f32<uint16_t>(p, n, out, [](uint16_t h) { return f16_to_f32(h); });
      break;
    case StDType::BF16:
      unaligned_to_f32<uint16_t>(p, n, out, [](uint16_t h) { return bf16_to_f32(h); });
      break;
    case StDType::I32:
      unaligned_to_f32<int32_t>(p, n, out, [](int32_t v) { return (float)v; });
      break;
    case StDType::I64:
      unaligned_to_f32<int64_t>(p, n, out, [](int64_t v) { return (float)v; });
      break;
  }
}

std::vector<float> SafetensorsFile::to_f32(const StTensor& t) const {
  std::vector<float> v((size_t)t.numel());
  to_f32(t, v.data());
  return v;
}

}  // namespace vksd
