// Measured peak device memory of generation runs, remembered per model: `vksd generate` records
// what a run actually took (Context::memory_peak: every vksd allocation, weights + activations
// + staging), and `vksd info` shows it beside the estimate, without needing a GPU itself.
// Kept in <user cache dir>/vksd/peak_memory.tsv, one line per (model file, size, dtype, mode,
// guidance batch); a newer run of the same kind replaces the line.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vksd {

struct PeakMemoryRecord {
  std::string model;   // absolute path of the checkpoint
  int width = 0, height = 0;
  std::string dtype;   // "f16" / "f32"
  bool lowvram = false;
  int batch = 1;       // UNet batch: 2 with classifier-free guidance
  uint64_t peak_bytes = 0;
  std::string device;  // where it was measured
  std::string date;    // UTC, when
  // Each stage's own peak, "text 1640 MiB, unet 5310 MiB, vae decode 1100 MiB" ("" = not
  // recorded: files written before stages were).
  std::string stages;
};

// The file (override with $VKSD_PEAK_MEMORY_FILE, e.g. for tests).
std::string peak_memory_file();
// Adds or replaces the record of this kind; errors writing the cache are ignored (it is a
// convenience, never a reason to fail a run).
void record_peak_memory(const PeakMemoryRecord& r);
// The records of one model (path as given; compared after making it absolute).
std::vector<PeakMemoryRecord> peak_memory_records(const std::string& model);

}  // namespace vksd
