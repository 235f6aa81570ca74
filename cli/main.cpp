// vksd command-line tool: one binary; each subcommand (cli/cmd_*.cpp) calls the runtime library.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "cli/command.h"
#include "cli/interrupt.h"
#include "cli/version.h"
#include "runtime/error.h"
#include "runtime/io/json.h"

namespace vksd::cli {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace vksd::cli

static void usage() {
  auto cmds = vksd::cli::registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::printf("vksd — Stable Diffusion on any Vulkan GPU\n\nusage: vksd <command> [options]   (vksd <command> --help for more)\n\ncommands:\n");
  for (auto& c : cmds) std::printf("  %-12s %s\n", c.name.c_str(), c.summary.c_str());
  std::printf(
      "\noptions for every command: --device <index|name> picks the Vulkan device (see `vksd devices`).\n"
      "vksd --version prints the version.\n"
      "\nenvironment: VKSD_DEVICE=<index|name> picks a device, VKSD_VALIDATION=1 enables the\n"
      "Khronos validation layer, VKSD_FP32=1 stores tensors in fp32 instead of fp16.\n");
}

// `--device X` (or --device=X) anywhere on the command line picks the Vulkan device for every
// command, like VKSD_DEVICE=X: an index from `vksd devices` or a substring of a device name.
static void take_device_flag(int& argc, char** argv) {
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--device" || a.rfind("--device=", 0) == 0) {
      const char* v = a == "--device" ? (i + 1 < argc ? argv[++i] : "") : a.c_str() + 9;
      if (!*v) vksd::fail("--device needs a device index or a name (see `vksd devices`)");
      setenv("VKSD_DEVICE", v, 1);
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  argv[argc] = nullptr;
}

int main(int argc, char** argv) {
  try {
    take_device_flag(argc, argv);
  } catch (const vksd::Error& e) {
    std::fprintf(stderr, "vksd: error: %s\n", e.what());
    return 2;
  }
  if (argc >= 2 && (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "version"))) {
    std::printf("vksd %s\n", VKSD_VERSION);
    return 0;
  }
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  for (auto& c : vksd::cli::registry())
    if (c.name == argv[1]) {
      try {
        return c.run(argc - 1, argv + 1);
      } catch (const std::exception& e) {
        if (const int sig = vksd::cli::interrupt_signal()) {
          std::fprintf(stderr, "vksd %s: interrupted by %s: stopped, nothing written for the unfinished image\n", argv[1],
                       vksd::cli::interrupt_signal_name());
          return 128 + sig;
        }
        const std::string msg = dynamic_cast<const std::bad_alloc*>(&e)
                                    ? "out of host memory (a smaller image, fewer steps or --lowvram may fit)"
                                    : e.what();
        std::fprintf(stderr, "vksd %s: error: %s\n", argv[1], msg.c_str());
        // With --json the error is an event on stdout too, for a program that reads only that.
        for (int i = 2; i < argc; ++i)
          if (!std::strcmp(argv[i], "--json")) {
            std::printf("{\"event\":\"error\",\"message\":\"%s\"}\n", vksd::json_escape(msg).c_str());
            break;
          }
        return 1;
      }
    }
  std::fprintf(stderr, "vksd: unknown command '%s' (see vksd --help)\n", argv[1]);
  return 2;
}
