// Command-line flag parsing shared by the subcommands: `--flag value`, `--flag=value`, and
// numbers checked with a message that names the flag.
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "runtime/error.h"

namespace vksd::cli {

inline long long parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  long long r = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno) fail(flag + " wants an integer, got '" + v + "'");
  return r;
}

// An integer within [lo, hi]: no wrap-around (4294967297 is not 1), no exponent forms (1e9),
// and a value out of range is refused with the limit in the message.
inline long long parse_int_in(const std::string& flag, const std::string& v, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  long long r = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end) fail(flag + " wants an integer, got '" + v + "'");
  if (errno == ERANGE || r > hi) fail(flag + " must be at most " + std::to_string(hi) + " (got " + v + ")");
  if (r < lo) fail(flag + " must be at least " + std::to_string(lo) + " (got " + v + ")");
  return r;
}

inline double parse_num(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  double r = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || !std::isfinite(r)) fail(flag + " wants a number, got '" + v + "'");
  return r;
}

// Walks argv[1..]: for each flag, `is(short, long)` tests its name and `val()` takes its value
// (inline after '=' or the next argument). `inline_value` says whether '=' was used (switches
// must not have one).
class FlagReader {
 public:
  FlagReader(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool next() {
    if (++i_ >= argc_) return false;
    flag_ = argv_[i_], value_.clear(), inline_ = false;
    if (flag_.rfind("--", 0) == 0 && flag_.find('=') != std::string::npos) {
      value_ = flag_.substr(flag_.find('=') + 1);
      flag_ = flag_.substr(0, flag_.find('='));
      inline_ = true;
    }
    return true;
  }
  bool is(const char* short_name, const char* long_name) const {
    return flag_ == long_name || (short_name && flag_ == short_name);
  }
  bool is_switch(const char* long_name) const { return flag_ == long_name && !inline_; }
  std::string val() {
    if (inline_) return value_;
    if (i_ + 1 >= argc_) fail(flag_ + " needs a value");
    return argv_[++i_];
  }
  long long int_val() { return parse_int(flag_, val()); }
  long long int_in(long long lo, long long hi) { return parse_int_in(flag_, val(), lo, hi); }
  double num_val() { return parse_num(flag_, val()); }
  const std::string& flag() const { return flag_; }
  std::string arg() const { return argv_[i_]; }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string flag_, value_;
  bool inline_ = false;
};

}  // namespace vksd::cli
