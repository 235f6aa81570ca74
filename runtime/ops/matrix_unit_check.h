// A first-use check of the matrix-unit kernels on the device at hand.
//
// The cooperative-matrix builds of matmul_coop.comp and attention_coop.comp depend on the
// driver's layout of tiles among lanes, its subgroup sizes and its shared-memory limits; a
// driver that gets one of them wrong would turn every image into noise. So before the first
// network is built, each front-end's pipeline runs one small linear, a 3x3 convolution and
// attention at SD's head widths both on the matrix unit and on the scalar kernels, on the same
// random fp16 data. Where they disagree, the profile drops the matrix unit for this Context
// and the caller is told why (both paths accumulate in fp32: their difference is fp16
// rounding, ~1e-3 relative, while a wrong tile shows as 0.1 or more).
#pragma once
#include <string>
#include <vector>

namespace vksd {
class Context;
}

namespace vksd::ops {

struct MatrixUnitProbe {
  std::string op;        // "linear", "conv2d 3x3", "attention (head dim 40)", ...
  bool on_unit = false;  // whether it ran on the matrix unit (the device's limits may keep it off)
  double error = 0;      // relative L2 distance of its result from the scalar kernel's
};
struct MatrixUnitCheck {
  std::vector<MatrixUnitProbe> probes;  // empty where nothing was checked
  std::string notice;                   // "" while the matrix unit stays in use
};

// Runs once per Context, and only where its profile uses a matrix unit (a no-op elsewhere,
// e.g. on lavapipe by default). Where any probe differs by more than 1e-2, the Context's
// profile drops the matrix unit and `notice` says which op disagreed and by how much.
MatrixUnitCheck check_matrix_unit(Context& ctx);

}  // namespace vksd::ops
