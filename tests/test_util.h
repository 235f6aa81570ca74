// Helpers shared by the tests: the validated Context, random data, error metrics, .npy files.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime/error.h"
#include "runtime/gpu/context.h"
#include "runtime/gpu/dtype.h"

namespace vksd {
class SdPipeline;
}

namespace vksd::test {

// The process-wide Context (validation on when VKSD_VALIDATION=1, as ctest sets it).
Context& ctx();
void shutdown_context();
uint64_t validation_messages_so_far();
uint64_t validation_messages_at_shutdown();

// Deterministic uniform/normal data.
std::vector<float> randn(size_t n, uint64_t seed, float stddev = 1.f);
std::vector<float> randu(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f);

// ||a - b|| / ||b|| computed in double (b is the reference).
double rel_l2(const std::vector<float>& a, const std::vector<double>& b);
double rel_l2(const std::vector<float>& a, const std::vector<float>& b);
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);

// The embedded demo model (weights/demo) itself, not $VKSD_MODEL: tests rely on its 64x64
// geometry.
std::string demo_model_path();
std::unique_ptr<SdPipeline> demo_pipeline();

// Tolerances for relative L2 error against a double-precision reference.
inline double tol_for(DType dt) { return dt == DType::F16 ? 2e-3 : 1e-5; }

// Round-trip through fp16 (what the device stores when dtype is F16): references start from
// the same rounded inputs so that the comparison measures the kernel, not the input rounding.
std::vector<float> round_to(DType dt, std::vector<float> v);

// NumPy .npy (v1/v2, little-endian, C order, f32/i32/i64/f64 converted to the requested type).
struct Npy {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
Npy load_npy(const std::string& path);
std::string shared_dir();          // ../shared beside the checkout
std::string vectors_dir();         // ../shared/vectors/tiny
bool shared_available();
// In a test case: the reference data must be there (it is beside every checkout and in CI); a
// missing ../shared fails the test instead of letting it pass without checking anything.
#define REQUIRE_SHARED()                                                                  \
  REQUIRE_MESSAGE(::vksd::test::shared_available(), "reference data missing: expected " \
                                                        << ::vksd::test::vectors_dir())
// The built `vksd` tool (tests run it as a user would); empty when it was not built.
std::string vksd_binary();
// Runs `vksd ARGS` (ARGS already shell-quoted) and returns its exit code and stdout+stderr.
// ENV, when given, is prepended to the command line (e.g. "env -u VKSD_VOCAB VKSD_MODEL=/x").
struct ToolRun {
  int code = -1;
  std::string out;
};
ToolRun run_vksd(const std::string& args, const std::string& env = "");
// `s` as one POSIX shell word.
std::string shell_quote(const std::string& s);

// The vksd::Error message of running f, "" when it does not throw (other exceptions propagate).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ::vksd::Error& e) {
    return e.what();
  }
  return "";
}

// Runs `body` with the shared Context's profile switched to the matrix-unit kernels' emulated
// build (VKSD_MATRIX_UNIT=emulated: the same kernels with plain loops for the matrix
// instructions) and the compact bounds off, so that small test shapes take them; the profile
// is restored afterwards. The workgroup has `subgroups` subgroups taking `blocks` of the four
// blocks each: 4 x 1 as on NVIDIA; 2 x 2 as where the driver runs 64-lane subgroups (AMD);
// 8 x 1, of which 4 only stage tiles, as where subgroups are narrower than reported (Intel).
void with_emulated_matrix_unit(const std::function<void()>& body, uint32_t subgroups = 4, uint32_t blocks = 1);

}  // namespace vksd::test
