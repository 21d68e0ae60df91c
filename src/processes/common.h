#pragma once

// Helpers shared by the processes' sources (src/processes/*.cpp).

#include <torch/types.h>

#include <sstream>
#include <string>

#include "math.h"

namespace sbgm::processes {

// Each formula is written once, for T = double (host form) and T = tensor
// (float64, per sample).
template <class T>
T clamp(const T& t, double lo, double hi) {
  return math::max(math::min(t, hi), lo);
}

inline torch::Tensor f64(const torch::Tensor& t) {
  return t.to(torch::kDouble);
}

inline std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace sbgm::processes
