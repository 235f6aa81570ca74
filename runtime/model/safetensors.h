// Safetensors reader: every header field is validated before any byte of tensor data is trusted,
// and tensor bytes are read with pread() into memory when asked for. (Not mmap: a file
// truncated or replaced while a run reads it would kill the process with SIGBUS; pread returns
// short instead, reported as an Error naming the file.)
//
// Layout: u64 little-endian N, then N bytes of JSON header, then the data area. The header maps
// tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
// area) plus an optional "__metadata__" object of string -> string.
// Every failure is a vksd::Error naming the file and, where there is one, the tensor.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"

namespace vksd {

// Element types a safetensors file may hold that vksd understands. Float weights come as
// F32/F16/BF16; integer tensors (e.g. CLIP's position_ids) are bookkeeping, never weights.
enum class StDType : uint8_t { F32, F16, BF16, I64, I32 };
size_t st_dtype_size(StDType t);
const char* st_dtype_name(StDType t);  // the header's spelling: "F32", "F16", ...

struct StTensor {
  std::string name;
  StDType dtype = StDType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte span within the data area
  int64_t numel() const { return shape_numel(shape); }
};

class SafetensorsFile {
 public:
  // The JSON header may be at most this long. Real SD checkpoints have ~1,100 tensors and
  // headers of ~100-200 KB (SDXL ~250 KB); 16 MiB is ample while a hostile 60 MB header of 10^6
  // tensors is refused before it is parsed.
  static constexpr uint64_t kMaxHeaderBytes = 16ull << 20;

  // Opens the file (a regular file only: never blocks on a FIFO) and validates the header;
  // throws vksd::Error on any malformed field.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  // Tensors in the header's order.
  const std::vector<StTensor>& tensors() const { return tensors_; }
  const StTensor* find(const std::string& name) const;        // nullptr when absent
  const StTensor& at(const std::string& name) const;          // Error naming file + tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor's raw little-endian bytes, read from the file (Error if it has become shorter).
  std::vector<uint8_t> bytes(const StTensor& t) const;
  // Bytes [begin, begin + n) of the tensor's data into dst (Error if outside it or the file).
  void read_range(const StTensor& t, uint64_t begin, uint64_t n, void* dst) const;
  // Converted to float32 on the host (F16/BF16 widened exactly; I32/I64 converted by value).
  std::vector<float> to_f32(const StTensor& t) const;
  void to_f32(const StTensor& t, float* out) const;

 private:
  std::string path_;
  void read_at(uint64_t offset, void* dst, size_t n) const;  // all n bytes, or an Error
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t data_start_ = 0;  // 8 + header length
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace vksd
