// Helpers of the parity tests against the reference vector sets (../shared/vectors/<set>):
// reading a set's arrays, slicing rows, comparing with a tolerance and reporting the error.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "runtime/gpu/dtype.h"
#include "tests/test_util.h"

namespace vksd::test {

// The folder of a reference set ("tiny", "sd2-tiny", ...).
inline std::string vector_set_dir(const std::string& set) { return shared_dir() + "/vectors/" + set; }
inline Npy set_npy(const std::string& set, const std::string& name) {
  return load_npy(vector_set_dir(set) + "/" + name + ".npy");
}

// Rows [begin, begin + count) of a [N, ...] array.
inline std::vector<float> rows(const Npy& a, int64_t begin, int64_t count) {
  const size_t row = a.data.size() / (size_t)a.shape[0];
  return {a.data.begin() + begin * row, a.data.begin() + (begin + count) * row};
}

// rel L2 of `got` against `ref`, reported, and checked against `tol`; returns the error.
inline double check_close(const std::string& what, DType dt, const std::vector<float>& got, const std::vector<float>& ref,
                          double tol) {
  REQUIRE(got.size() == ref.size());
  const double e = rel_l2(got, ref);
  MESSAGE(what << " [" << std::string(dtype_name(dt)) << "]: rel L2 " << e);
  CHECK(std::isfinite(e));
  CHECK(e <= tol);
  return e;
}

// PSNR of images in [-1, 1], measured on (x + 1) / 2 with peak 1, unclamped.
inline double psnr(const std::vector<float>& a, const std::vector<float>& b) {
  double mse = 0;
  for (size_t i = 0; i < a.size(); ++i) mse += 0.25 * ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  mse /= (double)a.size();
  return a.size() == b.size() ? 10 * std::log10(1.0 / std::max(mse, 1e-30)) : -INFINITY;
}

}  // namespace vksd::test
