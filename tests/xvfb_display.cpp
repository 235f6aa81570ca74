#include "tests/xvfb_display.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "runtime/error.h"

namespace vksd::test {

static std::string find_on_path(const char* name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

bool XvfbDisplay::available() { return !find_on_path("Xvfb").empty(); }

XvfbDisplay::XvfbDisplay() {
  const char* d = std::getenv("DISPLAY");
  const char* force = std::getenv("VKSD_TEST_XVFB");
  had_display_ = d != nullptr;
  if (d) old_display_ = d;
  if (d && *d && !(force && std::strcmp(force, "1") == 0)) return;  // use the real display

  std::string xvfb = find_on_path("Xvfb");
  if (xvfb.empty()) fail("a test needs an X display but DISPLAY is unset and Xvfb is not installed (apt install xvfb)");

  // Xvfb writes the display number to this pipe when it is ready; its stderr goes to a log
  // that is only shown when it fails to start.
  int fds[2];
  if (pipe(fds) != 0) fail(std::string("pipe: ") + std::strerror(errno));
  char log_path[] = "/tmp/vksd-xvfb-XXXXXX";
  int log_fd = mkstemp(log_path);
  if (log_fd < 0) {
    close(fds[0]);
    close(fds[1]);
    fail(std::string("mkstemp: ") + std::strerror(errno));
  }
  std::string fd = std::to_string(fds[1]);  // before fork: the child only makes async-signal-safe calls
  pid_ = fork();
  if (pid_ < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    close(log_fd);
    unlink(log_path);
    fail(std::string("fork: ") + std::strerror(e));
  }
  if (pid_ == 0) {
    // Dies with the test process, even when that one crashes or is killed.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    close(fds[0]);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(log_fd, 2);
    execl(xvfb.c_str(), "Xvfb", "-displayfd", fd.c_str(), "-screen", "0", "1600x1000x24", "-nolisten", "tcp",
          (char*)nullptr);
    _exit(127);
  }
  close(fds[1]);
  close(log_fd);

  // Read "N\n" (at most 10 s).
  std::string number;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (number.find('\n') == std::string::npos) {
    int left = (int)std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    int r = poll(&p, 1, left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[32];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // Xvfb exited
    number.append(buf, (size_t)n);
  }
  close(fds[0]);
  while (!number.empty() && (number.back() == '\n' || number.back() == ' ')) number.pop_back();
  if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    std::ifstream in(log_path);
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    unlink(log_path);
    fail("Xvfb did not start (" + xvfb + "): " + (log.empty() ? "no output" : log));
  }
  unlink(log_path);
  display_ = ":" + number;
  setenv("DISPLAY", display_.c_str(), 1);
}

XvfbDisplay::~XvfbDisplay() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    usleep(10000);
  }
  if (had_display_)
    setenv("DISPLAY", old_display_.c_str(), 1);
  else
    unsetenv("DISPLAY");
}

}  // namespace vksd::test
