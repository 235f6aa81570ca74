// XvfbDisplay: a virtual X server for tests that open windows on machines without a screen.
#pragma once
#include <string>
#include <sys/types.h>

namespace vksd::test {

// RAII. When DISPLAY is unset (or VKSD_TEST_XVFB=1 forces it), starts
// `Xvfb -displayfd FD -screen 0 1600x1000x24 -nolisten tcp`, which picks a free display
// number and reports it once it accepts connections; DISPLAY is set to it for this process.
// The destructor stops the server and restores DISPLAY. Otherwise the existing DISPLAY is used.
// Throws vksd::Error when Xvfb is missing or does not start.
class XvfbDisplay {
 public:
  XvfbDisplay();
  ~XvfbDisplay();
  XvfbDisplay(const XvfbDisplay&) = delete;
  XvfbDisplay& operator=(const XvfbDisplay&) = delete;

  static bool available();  // an `Xvfb` executable is on PATH
  bool started() const { return pid_ > 0; }
  const std::string& display() const { return display_; }  // e.g. ":7"

 private:
  pid_t pid_ = -1;
  std::string display_;
  bool had_display_ = false;
  std::string old_display_;
};

}  // namespace vksd::test
