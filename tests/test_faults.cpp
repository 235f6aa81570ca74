// Out of device memory and a lost device, forced through the runtime's test hook
// (VKSD_TEST_FAULT, runtime/gpu/fault_inject.h) in a real `vksd generate` run with validation:
// the message names the operation that hit the result, the exit is a clean 1 (no signal), no
// output file is left, and the validation layer reports nothing — it reports every Vulkan
// object still alive when the device is destroyed, so a leak on the error path fails here.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

struct Outcome {
  int code;
  std::string out;
  bool wrote;
};

Outcome generate_with_fault(const std::string& fault) {
  const fs::path dir = fs::temp_directory_path() / ("vksd_fault_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "out.png").string();
  const auto r = vksd::test::run_vksd(
      "generate -m " + vksd::test::shell_quote(vksd::test::demo_model_path()) + " -p 'a red apple' --steps 2 --seed 1 -o " +
          vksd::test::shell_quote(out),
      "VKSD_VALIDATION=1 VKSD_TEST_FAULT=" + fault);
  Outcome o{r.code, r.out, fs::exists(out)};
  fs::remove_all(dir);
  return o;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("forced faults: out of device memory names the allocation, exits 1, leaks nothing") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  // The first allocation (the weights), and later ones (activations, staging) in the same run.
  int failed = 0;
  for (int n : {1, 3, 8, 20}) {
    const Outcome o = generate_with_fault("alloc:" + std::to_string(n) + ":oom");
    INFO("alloc " << n << ": exit " << o.code << "\n" << o.out);
    CHECK(!has(o.out, "[vulkan validation]"));
    if (o.code == 0) continue;  // the run made fewer allocations
    ++failed;
    CHECK(o.code == 1);
    CHECK(has(o.out, "vksd generate: error: out of device memory allocating "));
    CHECK(has(o.out, "(VK_ERROR_OUT_OF_DEVICE_MEMORY); this image is too large for the device"));
    CHECK(!o.wrote);
  }
  CHECK(failed >= 3);
}

TEST_CASE("forced faults: a lost device names the GPU work that was running, exits 1, leaks nothing") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  struct Case {
    const char* fault;
    const char* message;
  };
  const Case cases[] = {
      {"transfer:1:device_lost", "vksd generate: error: a one-time GPU transfer (upload or download) failed: VK_ERROR_DEVICE_LOST"},
      // Weights go up in batches (one wait per staging slot): the 12th wait is in the sampling.
      {"transfer:12:device_lost", "vksd generate: error: a one-time GPU transfer (upload or download) failed: VK_ERROR_DEVICE_LOST"},
      // The first graph run is the text encoder's, then the UNet's steps, then the VAE's.
      {"graph:1:device_lost", "vksd generate: error: running a graph of "},
      {"graph:3:device_lost", "vksd generate: error: running a graph of "},
  };
  for (const Case& c : cases) {
    const Outcome o = generate_with_fault(c.fault);
    INFO(c.fault << ": exit " << o.code << "\n" << o.out);
    CHECK(o.code == 1);
    CHECK(has(o.out, c.message));
    CHECK(has(o.out, "VK_ERROR_DEVICE_LOST (the GPU stopped responding"));
    CHECK(!has(o.out, "[vulkan validation]"));
    CHECK(!o.wrote);
  }
}

TEST_CASE("forced faults: a malformed VKSD_TEST_FAULT is an error, not ignored") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  const Outcome o = generate_with_fault("alloc:x:oom");
  CHECK(o.code == 2);
  CHECK(has(o.out, "VKSD_TEST_FAULT must be SITE:N:RESULT"));
}
