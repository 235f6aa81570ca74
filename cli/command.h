// Subcommands of the `vksd` tool register themselves here; each lives in its own cli/*.cpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace vksd::cli {

struct Command {
  std::string name;
  std::string summary;  // one line for `vksd --help`
  std::function<int(int argc, char** argv)> run;  // argv[0] is the command name
};

std::vector<Command>& registry();

struct Register {
  Register(Command c) { registry().push_back(std::move(c)); }
};

}  // namespace vksd::cli

// Usage, at namespace scope in a cli/*.cpp:  VKSD_COMMAND(devices, "list Vulkan devices", fn);
#define VKSD_COMMAND(name, summary, fn) static ::vksd::cli::Register vksd_cmd_##name({#name, summary, fn})
