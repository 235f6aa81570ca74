// Wall and CPU seconds for the benchmarks. CPU time counts every thread of the process
// (llvmpipe's workers included), so on a CPU driver it shows how many cores a stretch kept busy.
#pragma once
#include <sys/resource.h>

#include <chrono>

namespace vksd::bench {

inline double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

inline double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Both clocks from construction on.
struct Stopwatch {
  double w0 = wall_seconds(), c0 = process_cpu_seconds();
  double wall() const { return wall_seconds() - w0; }
  double cpu() const { return process_cpu_seconds() - c0; }
};

}  // namespace vksd::bench
