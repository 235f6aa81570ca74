#include "runtime/io/file_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "runtime/error.h"

namespace vksd {

PathKind path_kind(const std::string& path, std::string* err) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return PathKind::Missing;
    if (errno == ELOOP) return PathKind::SymlinkLoop;
    if (err) *err = std::strerror(errno);
    return PathKind::Other;
  }
  if (S_ISREG(st.st_mode)) return PathKind::Regular;
  if (S_ISDIR(st.st_mode)) return PathKind::Directory;
  if (S_ISFIFO(st.st_mode)) return PathKind::Fifo;
  if (S_ISCHR(st.st_mode)) return PathKind::CharDevice;
  if (S_ISBLK(st.st_mode)) return PathKind::BlockDevice;
  if (S_ISSOCK(st.st_mode)) return PathKind::Socket;
  if (err) *err = "unknown file type";
  return PathKind::Other;
}

const char* path_kind_name(PathKind k) {
  switch (k) {
    case PathKind::Missing: return "missing";
    case PathKind::Regular: return "a regular file";
    case PathKind::Directory: return "a directory";
    case PathKind::Fifo: return "a FIFO (named pipe)";
    case PathKind::CharDevice: return "a character device";
    case PathKind::BlockDevice: return "a block device";
    case PathKind::Socket: return "a socket";
    case PathKind::SymlinkLoop: return "a symlink loop";
    case PathKind::Other: return "not readable";
  }
  return "?";
}

static void require(const std::string& path, const std::string& what, bool dir_ok) {
  std::string err;
  const PathKind k = path_kind(path, &err);
  if (k == PathKind::Regular || (dir_ok && k == PathKind::Directory)) return;
  const std::string want = dir_ok ? "a file or a folder" : "a regular file";
  if (k == PathKind::Missing) fail(what + " not found: " + path + " (no such file or directory)");
  if (k == PathKind::SymlinkLoop) fail(what + " '" + path + "' is a symlink loop (too many levels of symbolic links)");
  if (k == PathKind::Other) fail(what + " '" + path + "' cannot be read: " + err);
  fail(what + " '" + path + "' is " + path_kind_name(k) + ", not " + want);
}

void require_regular_file(const std::string& path, const std::string& what) { require(path, what, false); }
void require_file_or_directory(const std::string& path, const std::string& what) { require(path, what, true); }

int open_regular_file(const std::string& path, const std::string& what) {
  require_regular_file(path, what);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail(what + " '" + path + "' cannot be opened: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(what + " '" + path + "' is not a regular file");
  }
  return fd;
}

std::string read_regular_file(const std::string& path, const std::string& what) {
  const int fd = open_regular_file(path, what);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      fail(what + " '" + path + "': read error: " + std::strerror(e));
    }
    if (n == 0) break;
    data.append(buf, (size_t)n);
  }
  ::close(fd);
  return data;
}

}  // namespace vksd
