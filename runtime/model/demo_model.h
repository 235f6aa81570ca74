// The embedded demo model (weights/demo/, see weights/README.md): what `vksd generate` and the
// viewer use when no model is given, so that a fresh clone works with nothing to download.
#pragma once
#include <string>
#include <vector>

namespace vksd {

// The folder the demo model lives in, relative to the source tree.
inline constexpr const char* kDemoModelDir = "weights/demo";

// The model to use when none is given. Order:
//   1. the VKSD_MODEL environment variable, if set and not empty (a .safetensors file, a
//      diffusers folder, or a folder holding model.safetensors; it must exist);
//   2. for an installed <prefix>/bin/vksd: <prefix>/share/vksd/weights/demo (cmake --install);
//   3. weights/demo/ in the source tree vksd was built from (VKSD_SOURCE_DIR);
//   4. weights/demo/ beside the executable or one folder up (a copied build/ next to weights/).
// Returns the checkpoint path; otherwise throws an Error that says how to get a model.
std::string default_model_path();

// The model a command uses: `given` (its -m value) when not empty, else default_model_path();
// an Error naming it when it does not exist.
std::string resolve_model_path(const std::string& given);

// The same with the inputs spelled out (tests): `env_model` is VKSD_MODEL's value (nullptr =
// unset), `demo_dirs` the candidate weights/demo folders in order.
std::string default_model_path(const char* env_model, const std::vector<std::string>& demo_dirs);

// The checkpoint inside a model folder: <dir>/model.safetensors, or the folder itself when it
// is a diffusers layout (unet/ inside); "" when it holds neither.
std::string model_in_folder(const std::string& dir);

}  // namespace vksd
