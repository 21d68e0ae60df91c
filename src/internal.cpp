#include "internal.h"

#include <sstream>

namespace sbgm::detail {

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void check_floating(
    const torch::Tensor& x, const char* name, const char* where) {
  TORCH_CHECK(x.defined(), where, ": ", name, " is an undefined tensor");
  TORCH_CHECK(
      x.is_floating_point(),
      where,
      ": ",
      name,
      " must be a floating-point tensor, got dtype ",
      x.scalar_type());
}

void check_same_device(
    const torch::Tensor& a,
    const char* a_name,
    const torch::Tensor& b,
    const char* b_name,
    const char* where) {
  TORCH_CHECK(
      a.device() == b.device(),
      where,
      ": ",
      a_name,
      " is on ",
      a.device(),
      " but ",
      b_name,
      " is on ",
      b.device());
}

void check_time_tensor(
    const torch::Tensor& t,
    const torch::Tensor& x,
    bool integer,
    const char* where) {
  TORCH_CHECK(t.defined(), where, ": t is an undefined tensor");
  if (integer) {
    TORCH_CHECK(
        !t.is_floating_point() && !t.is_complex() &&
            t.scalar_type() != torch::kBool,
        where,
        ": discrete timesteps t must be an integer tensor, got dtype ",
        t.scalar_type());
  } else {
    TORCH_CHECK(
        t.is_floating_point(),
        where,
        ": continuous time t must be a floating-point tensor, got dtype ",
        t.scalar_type());
  }
  check_same_device(t, "t", x, "x", where);
  TORCH_CHECK(
      t.dim() <= 1,
      where,
      ": t must be 0-dim or 1-dim, got shape ",
      shape_str(t));
  if (t.dim() == 1) {
    TORCH_CHECK(
        x.dim() >= 1 && t.size(0) == x.size(0),
        where,
        ": t has ",
        t.size(0),
        " entries but x has shape ",
        shape_str(x),
        " (batch ",
        x.dim() >= 1 ? x.size(0) : 0,
        ")");
  }
}

bool host_minmax(const torch::Tensor& t, double* lo, double* hi) {
  if (!t.device().is_cpu() || t.numel() == 0) {
    return false;
  }
  auto d = t.to(torch::kDouble);
  *lo = d.min().item<double>();
  *hi = d.max().item<double>();
  return true;
}

}  // namespace sbgm::detail
