#include "runtime/diffusion/finite_check.h"

#include <cmath>

#include "runtime/error.h"

namespace vksd {

template <class T>
static long long first_bad(std::span<const T> v) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) return (long long)i;
  return -1;
}

long long first_non_finite(std::span<const float> v) { return first_bad(v); }
long long first_non_finite(std::span<const double> v) { return first_bad(v); }

template <class T>
static void require(std::span<const T> v, const std::string& stage) {
  const long long i = first_bad(v);
  if (i < 0) return;
  long long count = 0;
  for (const T x : v) count += !std::isfinite(x);
  fail("non-finite values (NaN or infinity) in " + stage + ": " + std::to_string(count) + " of " +
       std::to_string(v.size()) + ", first at index " + std::to_string(i) +
       "; the checkpoint may hold NaN/inf weights, or a setting (guidance, eta, an emphasis weight) is too extreme");
}

void require_finite(std::span<const float> v, const std::string& stage) { require(v, stage); }
void require_finite(std::span<const double> v, const std::string& stage) { require(v, stage); }

}  // namespace vksd
