#include "cli/generate_checks.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <set>
#include <system_error>

#include "runtime/error.h"
#include "runtime/io/file_check.h"

namespace fs = std::filesystem;

namespace vksd::cli {

void check_input_files(const GenerateFiles& f) {
  require_file_or_directory(f.model, "model");
  if (!f.config.empty()) require_regular_file(f.config, "--config file");
  if (!f.vocab.empty()) require_regular_file(f.vocab, "--vocab file");
  if (!f.init_img.empty()) require_regular_file(f.init_img, "--init-img");
  if (!f.mask.empty()) require_regular_file(f.mask, "--mask");
}

namespace {

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return !a.empty() && !b.empty() && fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

// The nearest folder of `p` that exists (the one new folders would be created in).
fs::path existing_ancestor(fs::path p) {
  std::error_code ec;
  p = fs::absolute(p, ec);
  while (!p.empty() && !fs::exists(p, ec) && p != p.root_path()) p = p.parent_path();
  return p;
}

void require_writable_dir(const fs::path& dir, const std::string& what) {
  const PathKind k = path_kind(dir.string());
  if (k == PathKind::Missing) fail(what + ": folder does not exist: " + dir.string());
  if (k != PathKind::Directory) fail(what + ": '" + dir.string() + "' is " + path_kind_name(k) + ", not a folder");
  // A real probe, not access(): root passes access() on a read-only filesystem's folders too.
  const fs::path probe = dir / (".vksd-write-test-" + std::to_string((long)::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail(what + ": cannot create files in folder '" + dir.string() + "': " + std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

void check_output_files(const GenerateFiles& f) {
  std::set<fs::path> probed;  // a batch of 100,000 PNGs shares one folder: probe it once
  for (const auto& out : f.outputs) {
    const std::string what = "output '" + out + "'";
    fs::path dir = fs::path(out).parent_path();
    if (dir.empty()) dir = ".";
    if (probed.insert(dir).second) {
      if (path_kind(dir.string()) == PathKind::Missing) fail("output folder does not exist: " + dir.string());
      require_writable_dir(dir, what);
    }
    const PathKind k = path_kind(out);
    if (k != PathKind::Missing && k != PathKind::Regular)
      fail(what + " is " + path_kind_name(k) + ", not a file that can be replaced");
    // A read-only file is a "keep this" (rename could replace it, even as root): respect it.
    struct stat st {};
    if (k == PathKind::Regular && ::stat(out.c_str(), &st) == 0 && (st.st_mode & 0222) == 0)
      fail(what + " exists and is read-only: remove it or choose another -o");
    if (same_file(out, f.init_img)) fail(what + " is the --init-img file: choose another -o so the input is not overwritten");
    if (same_file(out, f.mask)) fail(what + " is the --mask file: choose another -o so the input is not overwritten");
  }
  if (!f.save_steps.empty()) {
    const PathKind k = path_kind(f.save_steps);
    if (k == PathKind::Directory) {
      require_writable_dir(f.save_steps, "--save-steps");
    } else if (k == PathKind::Missing) {
      require_writable_dir(existing_ancestor(f.save_steps), "--save-steps (to create '" + f.save_steps + "')");
    } else {
      fail("--save-steps '" + f.save_steps + "' is " + path_kind_name(k) + ", not a folder");
    }
  }
}

}  // namespace vksd::cli
