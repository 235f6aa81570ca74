// Soak through the command line: one `vksd generate --batch-count 50` process, as a user runs a
// batch. Its host RSS is read from /proc/PID/statm each time the tool reports an image done
// (--json "done" events) and must stay within 2% of the value after the first image; the
// validation layer must stay silent (ctest runs with VKSD_VALIDATION=1, which also reports any
// object left alive at exit). The CLI changes only the seed within one process (there is no
// prompts file): varying prompt, size, sampler, guidance and img2img is tests/test_soak.cpp's
// library-API soak; this one checks the tool's own per-image path (PNG encoding, parameters
// text, file writing, progress output) for leaks.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

uint64_t rss_of(pid_t pid) {
  long pages = 0, resident = 0;
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/statm").c_str(), "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return (uint64_t)resident * (uint64_t)::sysconf(_SC_PAGESIZE);
}

}  // namespace

TEST_CASE("CLI soak: 50 images in one vksd generate process, RSS flat within 2% after the second image") {
  REQUIRE_MESSAGE(!vksd::test::vksd_binary().empty(), "the vksd binary was not built");
  const fs::path dir = fs::temp_directory_path() / ("vksd_cli_soak_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "soak.png").string(), err = (dir / "stderr.txt").string();
  const std::string bin = vksd::test::vksd_binary(), model = vksd::test::demo_model_path();
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    FILE* e = std::fopen(err.c_str(), "w");
    if (e) ::dup2(fileno(e), 2);
    ::close(fds[0]);
    ::setenv("VKSD_VALIDATION", "1", 1);
    ::execl(bin.c_str(), bin.c_str(), "generate", "-m", model.c_str(), "-p", "a red apple on a table", "--steps", "2",
            "--sampler", "dpm++2m", "--cfg-scale", "5", "--seed", "100", "--batch-count", "50", "--json", "-o", out.c_str(),
            (char*)nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  FILE* in = ::fdopen(fds[0], "r");
  std::vector<uint64_t> rss;
  char line[4096];
  while (std::fgets(line, sizeof line, in))
    if (std::string(line).find("\"event\":\"done\"") != std::string::npos) rss.push_back(rss_of(pid));
  std::fclose(in);
  int st = 0;
  ::waitpid(pid, &st, 0);
  std::ifstream ef(err);
  const std::string errors((std::istreambuf_iterator<char>(ef)), {});
  INFO("stderr:\n" << errors.substr(0, 4000));
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  REQUIRE(rss.size() == 50);
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.path().extension() == ".png";
  CHECK(files == 50);
  // The baseline is image 2: the text encoder's and UNet's graphs, recorded during image 1
  // before the VAE made the networks' shared activation arena (ScratchArena) its final size,
  // re-record once at image 2. A leak grows with every image after that.
  const uint64_t first = rss[1], worst = *std::max_element(rss.begin() + 2, rss.end());
  std::string curve;
  for (size_t i = 0; i < rss.size(); i += 7) curve += " " + std::to_string(rss[i] >> 20);
  MESSAGE("vksd generate --batch-count 50: RSS after image 1 " << (rss[0] >> 10) << " KiB, image 2 " << (first >> 10)
                                                               << " KiB, max after " << (worst >> 10) << " KiB, last "
                                                               << (rss.back() >> 10) << " KiB; MiB every 7 images:" << curve);
  CHECK(first > 0);
  CHECK(worst <= first + first / 50);
  CHECK(errors.find("[vulkan validation]") == std::string::npos);
  fs::remove_all(dir);
}
