// NaN/inf detection between the stages of a generation. A non-finite value anywhere (NaN
// weights, an absurd guidance scale, a diverging sampler) spreads to every pixel and used to end
// as an all-black PNG with exit 0; now the stage where it first appears stops the run with an
// Error that names it.
#pragma once
#include <span>
#include <string>

namespace vksd {

// Index of the first non-finite value, or -1.
long long first_non_finite(std::span<const float> v);
long long first_non_finite(std::span<const double> v);

// Throws vksd::Error("non-finite values (NaN or infinity) in STAGE ...") when v has any.
void require_finite(std::span<const float> v, const std::string& stage);
void require_finite(std::span<const double> v, const std::string& stage);

}  // namespace vksd
