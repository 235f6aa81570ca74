// After `vksd generate`: the run's measured peak device memory (recorded for `vksd info`, and
// printed with --verbose together with where start-up time went: pipelines created, seconds).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vksd {
class Context;
class SdPipeline;
struct GenerateParams;
}  // namespace vksd

namespace vksd::cli {

// `stage_peaks`: GenerateResult::stage_peaks of the last image.
void report_run(const Context& ctx, SdPipeline& pipe, const GenerateParams& p, const std::string& model,
                bool verbose, const std::vector<std::pair<std::string, uint64_t>>& stage_peaks);

// `vksd info MODEL`: the measured peaks recorded for it (nothing when none).
void print_measured_peaks(const std::string& model);

}  // namespace vksd::cli
