// The type check every input path gets before it is opened. open() on a FIFO blocks until a
// writer appears and reading a device or a directory gives nonsense, so the file type is looked
// at first (stat follows symlinks; a loop is ELOOP) and anything but what the caller wants is
// refused with a message that names the path, what it is, and what was expected.
#pragma once
#include <string>

namespace vksd {

enum class PathKind { Missing, Regular, Directory, Fifo, CharDevice, BlockDevice, Socket, SymlinkLoop, Other };

// What `path` is, following symlinks. `err` (if given) gets strerror for Other.
PathKind path_kind(const std::string& path, std::string* err = nullptr);
// "a FIFO (named pipe)", "a directory", ...
const char* path_kind_name(PathKind k);

// `what` names the role in the message, e.g. "--init-img" or "model". Throws vksd::Error unless
// the path is a regular file (or, for the second, a regular file or a directory).
void require_regular_file(const std::string& path, const std::string& what);
void require_file_or_directory(const std::string& path, const std::string& what);

// open(O_RDONLY | O_NONBLOCK | O_CLOEXEC) after require_regular_file, then fstat again (the path
// may have been swapped between the check and the open): a descriptor of a regular file.
int open_regular_file(const std::string& path, const std::string& what);

// The whole regular file `path` into memory (never blocks on a FIFO; fails on a read error).
std::string read_regular_file(const std::string& path, const std::string& what);

}  // namespace vksd
