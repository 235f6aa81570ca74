// ops::check_matrix_unit (runtime/ops/matrix_unit_check.h): the matrix-unit kernels compared
// with the scalar ones on the device before the first network. Lavapipe has no matrix unit, so
// the check runs on the emulated build (VKSD_MATRIX_UNIT=emulated), where it must pass, and on
// that build with a product broken on purpose (VKSD_TEST_FAULT=matrix_unit drops the last term
// of every dot product of the matrix-unit GEMM), where it must fall back to the scalar kernels:
// the image is then the one the scalar kernels make, byte for byte.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "runtime/gpu/context.h"
#include "runtime/ops/matrix_unit_check.h"
#include "tests/test_util.h"

using namespace vksd;
namespace fs = std::filesystem;

TEST_CASE("matrix unit check: nothing to check without one, and on the emulated build every probe runs on it and agrees, once per Context") {
  Context& ctx = test::ctx();
  auto passes = [&](MatrixUnitApi api) {
    const ops::MatrixUnitCheck r = ops::check_matrix_unit(ctx);
    CHECK(r.notice.empty());
    REQUIRE(r.probes.size() == 5);
    for (const ops::MatrixUnitProbe& p : r.probes) {
      CAPTURE(p.op);
      if (api == MatrixUnitApi::Emulated) CHECK(p.on_unit);  // a real device's limits may keep some off
      // Both results are fp32 sums rounded to fp16, in different orders.
      CHECK(p.error < 2e-3);
    }
    CHECK(ctx.profile().matrix_unit == api);
    CHECK(ctx.profile().matrix_unit_checked);
    CHECK(ops::check_matrix_unit(ctx).probes.empty());  // once
  };
  const DeviceProfile chosen = ctx.profile();
  if (chosen.matrix_unit == MatrixUnitApi::None) {
    CHECK(ops::check_matrix_unit(ctx).probes.empty());
  } else {  // a real matrix unit (the GPU run of scripts/device_check.sh): it must pass
    DeviceProfile fresh = chosen;
    fresh.matrix_unit_checked = false;
    ctx.set_profile(fresh);
    passes(chosen.matrix_unit);
    ctx.set_profile(chosen);
  }
  test::with_emulated_matrix_unit([&] { passes(MatrixUnitApi::Emulated); });
  CHECK(ctx.validation_messages() == 0);
}

namespace {

struct Run {
  int code;
  std::string out;
  std::string png;  // the image's bytes
};

Run generate(const std::string& env) {
  const fs::path dir = fs::temp_directory_path() / ("vksd_mu_check_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path out = dir / "out.png";
  const auto r = test::run_vksd("generate -m " + test::shell_quote(test::demo_model_path()) +
                                    " -p 'a red apple' --steps 2 --seed 3 -o " + test::shell_quote(out.string()),
                                "VKSD_VALIDATION=1 " + env);
  Run run{r.code, r.out, ""};
  if (std::ifstream f(out, std::ios::binary); f) run.png.assign(std::istreambuf_iterator<char>(f), {});
  fs::remove_all(dir);
  return run;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("matrix unit check: a matrix unit that computes wrong products is dropped with a note, the image is the scalar kernels'") {
  REQUIRE_MESSAGE(!test::vksd_binary().empty(), "the vksd binary was not built");
  const Run scalar = generate("VKSD_MATRIX_UNIT=0");
  const Run good = generate("VKSD_MATRIX_UNIT=emulated");
  const Run broken = generate("VKSD_MATRIX_UNIT=emulated VKSD_TEST_FAULT=matrix_unit");
  INFO("scalar:\n" << scalar.out << "\nemulated:\n" << good.out << "\nbroken:\n" << broken.out);
  REQUIRE(scalar.code == 0);
  CHECK(good.code == 0);
  CHECK(!has(good.out, "matrix unit"));
  CHECK(broken.code == 0);
  CHECK(has(broken.out, "note: the matrix unit (emulated cooperative matrix) failed its check on this device: "
                        "linear differs from the scalar kernel by "));
  CHECK(has(broken.out, "using the scalar kernels"));
  CHECK(!has(broken.out + good.out + scalar.out, "[vulkan validation]"));
  CHECK(!scalar.png.empty());
  CHECK(broken.png == scalar.png);
}

TEST_CASE("vksd devices --check: runs the check per device, says what it found, exits 1 where a matrix unit disagrees") {
  REQUIRE_MESSAGE(!test::vksd_binary().empty(), "the vksd binary was not built");
  const auto plain = test::run_vksd("devices --check", "VKSD_VALIDATION=1");
  INFO(plain.out);
  CHECK(plain.code == 0);
  CHECK((has(plain.out, "matrix unit check: no matrix unit in use") || has(plain.out, ": agrees")));
  const auto good = test::run_vksd("devices --check", "VKSD_VALIDATION=1 VKSD_MATRIX_UNIT=emulated");
  INFO(good.out);
  CHECK(good.code == 0);
  CHECK(has(good.out, "matrix unit check (relative L2 vs the scalar kernels): linear "));
  CHECK(has(good.out, "causal attention (head dim 64) "));
  CHECK(has(good.out, ": agrees"));
  const auto broken = test::run_vksd("devices --check", "VKSD_VALIDATION=1 VKSD_MATRIX_UNIT=emulated VKSD_TEST_FAULT=matrix_unit");
  INFO(broken.out);
  CHECK(broken.code == 1);
  CHECK(has(broken.out, ": FAILED, the scalar kernels are used"));
  CHECK(!has(plain.out + good.out + broken.out, "[vulkan validation]"));
}
