#include "cli/from_png.h"

#include <algorithm>

#include "runtime/error.h"
#include "runtime/io/image_io.h"
#include "runtime/io/infotext.h"

namespace vksd::cli {

std::vector<std::string> flags_from_png(const std::string& png_path, const std::vector<std::string>& user_args) {
  std::string text;
  for (const auto& [key, value] : read_png_text(png_path))
    if (key == "parameters") text = value;
  if (text.empty()) fail("--from-png: '" + png_path + "' has no A1111 'parameters' text to re-run");
  const Infotext info = parse_infotext(text);
  if (info.params.empty()) fail("--from-png: the parameters of '" + png_path + "' have no settings line (Steps: ..., Seed: ...)");
  std::vector<std::string> f = {"--prompt", info.prompt};
  if (!info.negative_prompt.empty()) f.insert(f.end(), {"--negative-prompt", info.negative_prompt});
  auto take = [&](const char* key, const char* flag) {
    if (auto v = info.get(key)) f.insert(f.end(), {flag, *v});
  };
  take("Steps", "--steps");
  take("CFG scale", "--cfg-scale");
  take("Seed", "--seed");
  take("Clip skip", "--clip-skip");
  take("Eta", "--eta");
  take("Eta DDIM", "--eta");
  if (auto s = info.get("Sampler")) {
    // A1111 1.9+ writes the schedule apart ("DPM++ 2M" + "Schedule type: Karras").
    std::string name = *s;
    if (auto sched = info.get("Schedule type"); sched && *sched != "Automatic") name += " " + *sched;
    f.insert(f.end(), {"--sampler", name});
  }
  if (auto size = info.get("Size")) {
    const auto x = size->find('x');
    if (x == std::string::npos) fail("--from-png: Size '" + *size + "' in '" + png_path + "' is not WIDTHxHEIGHT");
    f.insert(f.end(), {"--width", size->substr(0, x), "--height", size->substr(x + 1)});
  }
  const bool init = std::any_of(user_args.begin(), user_args.end(),
                                [](const std::string& a) { return a == "--init-img" || a.rfind("--init-img=", 0) == 0; });
  if (init) take("Denoising strength", "--strength");
  return f;
}

std::vector<std::string> expand_from_png(int argc, char** argv) {
  std::vector<std::string> user, pngs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--from-png") {
      if (i + 1 >= argc) fail("--from-png needs a value");
      pngs.push_back(argv[++i]);
    } else if (a.rfind("--from-png=", 0) == 0) {
      pngs.push_back(a.substr(11));
    } else {
      user.push_back(a);
    }
  }
  std::vector<std::string> out = {argc > 0 ? argv[0] : "generate"};
  for (const auto& p : pngs) {
    auto f = flags_from_png(p, user);
    out.insert(out.end(), f.begin(), f.end());
  }
  out.insert(out.end(), user.begin(), user.end());
  return out;
}

}  // namespace vksd::cli
