// libFuzzer harness: the safetensors header and metadata parser (SafetensorsFile), on arbitrary
// bytes written to a file, then every tensor read back. Must only ever throw vksd::Error.
// The file lives in /dev/shm (memory) when there is one: on a disk mounted with `discard` (this
// machine's /), truncating the previous input's file waits for the device, about 4 ms of the
// 5 ms an input took — the fuzzer measured the disk, not the parser.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "runtime/error.h"
#include "runtime/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                                  "/vksd_fuzz_st_" + std::to_string((long)getpid()) + ".safetensors";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    vksd::SafetensorsFile st(path);
    for (const auto& t : st.tensors()) {
      (void)st.find(t.name);
      if (t.numel() <= (1 << 16)) (void)st.to_f32(t);
    }
    for (const auto& [k, v] : st.metadata()) (void)k, (void)v;
  } catch (const vksd::Error&) {
  }
  return 0;
}
