// The checks `vksd generate` makes on its files before the (slow) model load: every input is a
// regular file (a FIFO, a device, a directory or a symlink loop is refused, never opened), and
// every output can be written — so that a bad path costs milliseconds, not a whole generation
// that then cannot be saved.
#pragma once
#include <string>
#include <vector>

namespace vksd::cli {

// Documented maxima of generate's numeric flags (README, "Bad input"): far beyond any real use,
// small enough that nothing wraps or allocates absurdly.
constexpr long long kMaxWidthHeight = 16384;  // -W / -H, pixels
constexpr long long kMaxSteps = 10000;
constexpr long long kMaxBatchCount = 100000;
constexpr long long kMaxClipSkip = 64;
constexpr long long kMaxVaeTile = 2048;

struct GenerateFiles {
  std::string model, config, vocab, init_img, mask;  // inputs ("" = not given)
  std::vector<std::string> outputs;                   // every PNG the run will write
  std::string save_steps;                             // folder, "" = none
};

// Throws vksd::Error naming the flag and the problem.
void check_input_files(const GenerateFiles& f);
void check_output_files(const GenerateFiles& f);

}  // namespace vksd::cli
