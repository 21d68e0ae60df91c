#include "internal.h"

#include <ATen/Dispatch.h>

#include <cmath>
#include <limits>
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

void check_finite(
    const torch::Tensor& x, const char* name, const char* where, bool sync_ok) {
  if (!x.defined() || !x.is_floating_point() || x.numel() == 0 ||
      (!sync_ok && !x.device().is_cpu())) {
    return;
  }
  if (torch::isfinite(x).all().item<bool>()) {
    return;
  }
  const auto bad = torch::isfinite(x).logical_not().flatten();
  const int64_t count = bad.sum().item<int64_t>();
  const int64_t first = bad.to(torch::kByte).argmax().item<int64_t>();
  TORCH_CHECK(
      false,
      where,
      ": ",
      name,
      " holds ",
      count,
      " non-finite value",
      count == 1 ? "" : "s",
      " (NaN or Inf) among ",
      x.numel(),
      ", the first at flat index ",
      first,
      " (shape ",
      shape_str(x),
      ")");
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
  if (t.is_contiguous() && !t.is_complex() && t.scalar_type() != torch::kBool) {
    // A plain loop: the tensor route (convert, min, max, two reads) costs
    // tens of microseconds, paid on every model call of a sampler step.
    // NaN anywhere gives NaN for both, as min()/max() do.
    AT_DISPATCH_ALL_TYPES_AND2(
        torch::kHalf, torch::kBFloat16, t.scalar_type(), "host_minmax", [&] {
          const scalar_t* p = t.data_ptr<scalar_t>();
          double a = static_cast<double>(p[0]), b = a;
          bool nan = std::isnan(a);
          for (int64_t i = 1; i < t.numel(); ++i) {
            const double v = static_cast<double>(p[i]);
            nan = nan || std::isnan(v);
            a = v < a ? v : a;
            b = v > b ? v : b;
          }
          if (nan) {
            a = b = std::numeric_limits<double>::quiet_NaN();
          }
          *lo = a;
          *hi = b;
        });
    return true;
  }
  auto d = t.to(torch::kDouble);
  *lo = d.min().item<double>();
  *hi = d.max().item<double>();
  return true;
}

void check_step_range(const torch::Tensor& t, int64_t T, const char* where) {
  double lo = 0, hi = 0;
  if (host_minmax(t, &lo, &hi)) {
    TORCH_CHECK(
        lo >= 0 && hi < static_cast<double>(T),
        where,
        ": step indices must lie in [0, ",
        T,
        "), got values in [",
        static_cast<int64_t>(lo),
        ", ",
        static_cast<int64_t>(hi),
        "]");
  }
}

torch::Tensor class_labels(
    const torch::Tensor& cond,
    const torch::Tensor& x,
    int64_t num_classes,
    double drop,
    const char* where) {
  const int64_t n = x.size(0);
  if (!cond.defined()) {
    return torch::full(
        {n}, num_classes, torch::dtype(torch::kLong).device(x.device()));
  }
  TORCH_CHECK(
      !cond.is_floating_point() && !cond.is_complex() &&
          cond.scalar_type() != torch::kBool,
      where,
      ": a class embedding takes integer class indices, got a condition of "
      "dtype ",
      cond.scalar_type());
  TORCH_CHECK(
      cond.dim() == 1 && cond.size(0) == n,
      where,
      ": class labels must have shape [",
      n,
      "] (one per sample), got ",
      shape_str(cond));
  check_same_device(cond, "the class labels", x, "x", where);
  double lo = 0, hi = 0;
  if (host_minmax(cond, &lo, &hi)) {
    TORCH_CHECK(
        lo >= 0 && hi <= static_cast<double>(num_classes),
        where,
        ": class labels must lie in [0, ",
        num_classes,
        "] (",
        num_classes,
        ": no class), got values in [",
        static_cast<int64_t>(lo),
        ", ",
        static_cast<int64_t>(hi),
        "]");
  }
  auto labels = cond.to(torch::kLong);
  if (drop > 0) {
    auto dropped = torch::rand({n}, x.options().dtype(torch::kFloat)) < drop;
    labels = labels.masked_fill(dropped, num_classes);
  }
  return labels;
}

}  // namespace sbgm::detail
