#include "runtime/model/demo_model.h"

#include "runtime/io/file_check.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "runtime/error.h"

namespace fs = std::filesystem;

namespace vksd {

std::string model_in_folder(const std::string& dir) {
  std::error_code ec;
  const fs::path d(dir);
  if (fs::is_regular_file(d / "model.safetensors", ec)) return (d / "model.safetensors").string();
  if (fs::is_directory(d / "unet", ec)) return d.string();
  return {};
}

std::string default_model_path(const char* env_model, const std::vector<std::string>& demo_dirs) {
  std::error_code ec;
  if (env_model && *env_model) {
    // An explicit choice that does not exist is an error, not a reason to fall back to the demo.
    if (fs::is_regular_file(env_model, ec)) return env_model;
    if (fs::is_directory(env_model, ec)) {
      if (auto m = model_in_folder(env_model); !m.empty()) return m;
      fail(std::string("VKSD_MODEL names the folder ") + env_model +
           ", which holds neither model.safetensors nor a diffusers layout (unet/, vae/, text_encoder/)");
    }
    fail(std::string("VKSD_MODEL names a model that does not exist: ") + env_model);
  }
  std::string looked;
  for (const auto& dir : demo_dirs) {
    if (auto m = model_in_folder(dir); !m.empty()) return m;
    looked += "\n  " + (fs::path(dir) / "model.safetensors").lexically_normal().string();
  }
  fail("no model given (-m) and the demo model is not there; looked for:" + looked +
       "\nThe demo model is not trained yet in this checkout: train and export it as weights/README.md "
       "describes (\"Rebuilding the model\": prepare_data.py, bpe.py learn, train.py, export.py -> weights/demo/), "
       "or pass -m PATH to a Stable Diffusion 1.x checkpoint (.safetensors or diffusers folder), "
       "or set VKSD_MODEL=PATH.");
}

std::string default_model_path() {
  std::vector<std::string> dirs;
  auto add = [&](const fs::path& d) {
    const std::string n = d.lexically_normal().string();
    if (std::find(dirs.begin(), dirs.end(), n) == dirs.end()) dirs.push_back(n);
  };
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);  // the running executable (Linux)
  const bool have_exe = !ec && !exe.empty();
  // An installed <prefix>/bin/vksd (cmake --install) uses the copy installed beside it, even
  // while the tree it was built from still exists.
  if (have_exe && fs::is_directory(exe.parent_path().parent_path() / "share" / "vksd" / kDemoModelDir, ec))
    add(exe.parent_path().parent_path() / "share" / "vksd" / kDemoModelDir);
  add(fs::path(VKSD_SOURCE_DIR) / kDemoModelDir);
  // The executable's folder and the one above, for a build moved next to weights/.
  if (have_exe)
    for (const fs::path& base : {exe.parent_path(), exe.parent_path().parent_path()}) add(base / kDemoModelDir);
  return default_model_path(std::getenv("VKSD_MODEL"), dirs);
}

std::string resolve_model_path(const std::string& given) {
  const std::string model = given.empty() ? default_model_path() : given;
  // The type check names what a wrong path is (missing, a FIFO, a symlink loop, ...).
  require_file_or_directory(model, "model");
  return model;
}

}  // namespace vksd
