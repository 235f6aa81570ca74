// After `vksd generate`: the run's measured peak device memory (recorded for `vksd info`, and
// printed with --verbose together with where start-up time went: pipelines created, seconds).
#pragma once
#include <string>

namespace vksd {
class Context;
class SdPipeline;
struct GenerateParams;
}  // namespace vksd

namespace vksd::cli {

void report_run(const Context& ctx, SdPipeline& pipe, const GenerateParams& p, const std::string& model, bool lowvram,
                bool verbose);

// `vksd info MODEL`: the measured peaks recorded for it (nothing when none).
void print_measured_peaks(const std::string& model);

}  // namespace vksd::cli
