// `--device` on any command picks the Vulkan device, like VKSD_DEVICE.
#include <doctest/doctest.h>

#include <filesystem>
#include <unistd.h>

#include "runtime/gpu/context.h"
#include "tests/test_util.h"

TEST_CASE("cli: --device picks a device by index or name, and a bad one is a clear error") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  auto devs = vksd::Context::list_devices();
  REQUIRE(!devs.empty());
  const std::string model = "'" + vksd::test::vectors_dir() + "/model.safetensors'";
  const std::string vocab = "'" + vksd::test::shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz'";
  const std::string out = "/tmp/vksd_device_test_" + std::to_string(::getpid()) + ".png";
  const std::string gen = "generate -m " + model + " --vocab " + vocab + " -p x -W 32 -H 32 --steps 1 -o " + out;

  auto bad = vksd::test::run_vksd("--device 99 " + gen);
  CHECK(bad.code != 0);
  CHECK(bad.out.find("device index 99 out of range") != std::string::npos);
  auto nomatch = vksd::test::run_vksd(gen + " --device=no-such-gpu");
  CHECK(nomatch.code != 0);
  CHECK(nomatch.out.find("no Vulkan device matches 'no-such-gpu'") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));

  // By a substring of the first device's name: the run says which device it used.
  std::string name = devs[0].name.substr(0, 4);
  auto ok = vksd::test::run_vksd("--device '" + name + "' " + gen);
  INFO(ok.out);
  CHECK(ok.code == 0);
  CHECK(ok.out.find("on " + devs[0].name) != std::string::npos);
  std::filesystem::remove(out);
}
