#include "runtime/model/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/error.h"
#include "runtime/io/file_check.h"
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

// A file that is plainly something else gets named as such instead of a JSON error about its
// first byte.
static const char* known_non_safetensors(const uint8_t* p, size_t n) {
  auto is = [&](std::initializer_list<uint8_t> sig) {
    return n >= sig.size() && std::equal(sig.begin(), sig.end(), p);
  };
  if (is({0x89, 'P', 'N', 'G'})) return "a PNG image";
  if (is({0xff, 0xd8, 0xff})) return "a JPEG image";
  if (is({'G', 'I', 'F', '8'})) return "a GIF image";
  if (is({0x1f, 0x8b})) return "a gzip file";
  if (is({'P', 'K', 0x03, 0x04})) return "a zip archive (a PyTorch .ckpt/.pt checkpoint?)";
  if (is({0x80, 0x02}) || is({0x80, 0x04}) || is({0x80, 0x05})) return "a Python pickle (a PyTorch checkpoint?)";
  if (is({'G', 'G', 'U', 'F'})) return "a GGUF file";
  return nullptr;
}

void SafetensorsFile::read_at(uint64_t offset, void* dst, size_t n) const {
  auto* out = static_cast<uint8_t*>(dst);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd_, out + got, n - got, (off_t)(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(path_ + ": read error at byte " + std::to_string(offset + got) + ": " + std::strerror(errno));
    if (r == 0)
      fail(path_ + ": file is truncated: expected " + std::to_string(size_) + " bytes, it ends at byte " +
           std::to_string(offset + got) + " (was it changed or cut short while vksd was reading it?)");
    got += (size_t)r;
  }
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  auto bad = [&](const std::string& what) -> void { fail(path_ + ": " + what); };
  fd_ = open_regular_file(path, "safetensors file");
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) bad(std::string("cannot stat: ") + std::strerror(errno));
    size_ = (uint64_t)st.st_size;
    if (size_ == 0) bad("file is empty (0 bytes), not a safetensors file");
    uint8_t head[9] = {};
    read_at(0, head, (size_t)std::min<uint64_t>(9, size_));
    // Only a file whose first bytes make no sense as a header length (or no '{' after them) is
    // named by its signature: a real header length may well start with a byte like 0x1f.
    const uint64_t header_len = size_ >= 8 ? read_u64_le(head) : 0;
    if (size_ < 9 || header_len > size_ - 8 || header_len > kMaxHeaderBytes || head[8] != '{')
      if (const char* what = known_non_safetensors(head, (size_t)std::min<uint64_t>(9, size_)))
        bad(std::string("this is ") + what + ", not a safetensors checkpoint");
    if (size_ < 8)
      bad("file is " + std::to_string(size_) + " bytes, too short for the 8-byte safetensors header length");
    if (header_len > size_ - 8)
      bad("header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(size_) +
          " bytes): truncated or not a safetensors file");
    if (header_len > kMaxHeaderBytes)
      bad("header is " + std::to_string(header_len) + " bytes, more than the " + std::to_string(kMaxHeaderBytes >> 20) +
          " MiB vksd accepts (real checkpoints have headers of a few hundred KB)");
    data_start_ = 8 + header_len;
    const uint64_t data_size = size_ - data_start_;
    std::string header_text((size_t)header_len, '\0');
    read_at(8, header_text.data(), header_text.size());

    Json header;
    try {
      header = Json::parse(header_text);
    } catch (const Error& e) {
      bad(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) bad("header is not a JSON object");

    for (const auto& entry : header.as_object()) {
      // Not a structured binding: clang 14 (the fuzz build) rejects lambdas that capture one.
      const std::string& name = entry.first;
      const Json& v = entry.second;
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
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
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

std::vector<uint8_t> SafetensorsFile::bytes(const StTensor& t) const {
  std::vector<uint8_t> b((size_t)(t.end - t.begin));
  read_at(data_start_ + t.begin, b.data(), b.size());
  return b;
}

void SafetensorsFile::read_range(const StTensor& t, uint64_t begin, uint64_t n, void* dst) const {
  if (begin > t.end - t.begin || n > t.end - t.begin - begin)
    fail(path_ + ": tensor '" + t.name + "': read outside its data");
  read_at(data_start_ + t.begin + begin, dst, (size_t)n);
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
  const size_t n = (size_t)t.numel();
  if (t.dtype == StDType::F32) {  // straight into the destination
    read_at(data_start_ + t.begin, out, n * 4);
    return;
  }
  const std::vector<uint8_t> raw = bytes(t);
  const uint8_t* p = raw.data();
  switch (t.dtype) {
    case StDType::F32:
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
