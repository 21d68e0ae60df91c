#include "sbgm/metrics/distances.h"

#include <cmath>

#include "../internal.h"

namespace sbgm::metrics {

namespace {

void check_pair(
    const torch::Tensor& x, const torch::Tensor& y, const char* where) {
  detail::check_floating(x, "x", where);
  detail::check_floating(y, "y", where);
  TORCH_CHECK(
      x.dim() == 2 && y.dim() == 2 && x.size(1) == y.size(1) && x.size(1) >= 1,
      where,
      ": x and y must have shapes [N, D] and [M, D], got ",
      detail::shape_str(x),
      " and ",
      detail::shape_str(y));
  detail::check_same_device(x, "x", y, "y", where);
  detail::check_finite(x, "x", where);
  detail::check_finite(y, "y", where);
}

torch::Tensor kernel_sum(
    const torch::Tensor& a,
    const torch::Tensor& b,
    const std::vector<double>& bandwidths,
    bool drop_diagonal) {
  auto d2 = torch::cdist(a, b).square();
  auto k = torch::zeros_like(d2);
  for (double h : bandwidths) {
    k.add_((d2 * (-0.5 / (h * h))).exp_());
  }
  auto total = k.sum();
  if (drop_diagonal) {
    total = total - k.diagonal().sum();
  }
  return total;
}

}  // namespace

torch::Tensor mmd_rbf(
    const torch::Tensor& x,
    const torch::Tensor& y,
    const std::vector<double>& bandwidths,
    bool unbiased) {
  const char* where = "mmd_rbf";
  check_pair(x, y, where);
  TORCH_CHECK(
      x.size(0) >= 2 && y.size(0) >= 2,
      where,
      ": need at least 2 samples in each set, got ",
      x.size(0),
      " and ",
      y.size(0));
  TORCH_CHECK(!bandwidths.empty(), where, ": bandwidths is empty");
  for (double h : bandwidths) {
    TORCH_CHECK(
        h > 0 && std::isfinite(h),
        where,
        ": bandwidths must be finite and > 0, got ",
        h);
  }
  auto a = x.to(torch::kDouble);
  auto b = y.to(torch::kDouble);
  const double n = static_cast<double>(a.size(0));
  const double m = static_cast<double>(b.size(0));
  auto kxx = kernel_sum(a, a, bandwidths, unbiased);
  auto kyy = kernel_sum(b, b, bandwidths, unbiased);
  auto kxy = kernel_sum(a, b, bandwidths, false);
  if (unbiased) {
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m);
  }
  return kxx / (n * n) + kyy / (m * m) - 2.0 * kxy / (n * m);
}

torch::Tensor sliced_wasserstein(
    const torch::Tensor& x,
    const torch::Tensor& y,
    int64_t num_projections,
    std::optional<torch::Generator> generator) {
  const char* where = "sliced_wasserstein";
  check_pair(x, y, where);
  TORCH_CHECK(
      x.size(0) == y.size(0) && x.size(0) >= 1,
      where,
      ": x and y must hold the same number (>= 1) of samples, got ",
      x.size(0),
      " and ",
      y.size(0));
  TORCH_CHECK(
      num_projections >= 1,
      where,
      ": num_projections must be >= 1, got ",
      num_projections);
  auto a = x.to(torch::kDouble);
  auto b = y.to(torch::kDouble);
  auto gen = detail::to_c10(generator);
  auto theta = torch::randn(
      {a.size(1), num_projections},
      gen,
      torch::TensorOptions().dtype(torch::kDouble).device(a.device()));
  theta = theta / theta.norm(2, {0}, /*keepdim=*/true);
  auto pa = std::get<0>(a.matmul(theta).sort(0));
  auto pb = std::get<0>(b.matmul(theta).sort(0));
  return (pa - pb).square().mean().sqrt();
}

}  // namespace sbgm::metrics
