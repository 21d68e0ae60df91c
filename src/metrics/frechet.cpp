#include "sbgm/metrics/frechet.h"

#include <algorithm>

#include "internal.h"

namespace sbgm {

namespace {

torch::Tensor symmetrize(const torch::Tensor& m) {
  return (m + m.transpose(0, 1)) * 0.5;
}

// Eigenvalues and vectors of a symmetric matrix, eigenvalues clamped at 0.
std::pair<torch::Tensor, torch::Tensor> psd_eigh(const torch::Tensor& m) {
  auto [vals, vecs] = torch::linalg_eigh(symmetrize(m), "L");
  return {vals.clamp_min(0.0), vecs};
}

void check_stats(const GaussianStats& s, const char* name) {
  TORCH_CHECK(
      s.mean.defined() && s.cov.defined(),
      "frechet_distance: ",
      name,
      " has undefined mean or covariance");
  TORCH_CHECK(
      s.mean.dim() == 1 && s.cov.dim() == 2 &&
          s.cov.size(0) == s.mean.size(0) && s.cov.size(1) == s.mean.size(0),
      "frechet_distance: ",
      name,
      " needs mean [D] and covariance [D, D], got ",
      detail::shape_str(s.mean),
      " and ",
      detail::shape_str(s.cov));
}

}  // namespace

GaussianStats gaussian_stats(const torch::Tensor& features) {
  detail::check_floating(features, "features", "gaussian_stats");
  TORCH_CHECK(
      features.dim() == 2 && features.size(0) >= 2 && features.size(1) >= 1,
      "gaussian_stats: features must be [N, D] with N >= 2, got shape ",
      detail::shape_str(features));
  auto f = features.detach().to(torch::kCPU, torch::kDouble);
  TORCH_CHECK(
      torch::isfinite(f).all().item<bool>(),
      "gaussian_stats: features contain NaN or infinite values");
  auto mean = f.mean(0);
  auto centered = f - mean;
  auto cov = centered.transpose(0, 1).matmul(centered) /
             static_cast<double>(f.size(0) - 1);
  return {mean, cov};
}

double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  check_stats(a, "a");
  check_stats(b, "b");
  TORCH_CHECK(
      a.mean.size(0) == b.mean.size(0),
      "frechet_distance: feature dimensions differ: ",
      a.mean.size(0),
      " vs ",
      b.mean.size(0));
  auto mu1 = a.mean.to(torch::kCPU, torch::kDouble);
  auto mu2 = b.mean.to(torch::kCPU, torch::kDouble);
  auto c1 = symmetrize(a.cov.to(torch::kCPU, torch::kDouble));
  auto c2 = symmetrize(b.cov.to(torch::kCPU, torch::kDouble));
  TORCH_CHECK(
      torch::isfinite(mu1).all().item<bool>() &&
          torch::isfinite(mu2).all().item<bool>() &&
          torch::isfinite(c1).all().item<bool>() &&
          torch::isfinite(c2).all().item<bool>(),
      "frechet_distance: statistics contain NaN or infinite values");

  // C1^{1/2} = U diag(sqrt(l)) U^T.
  auto [l1, u1] = psd_eigh(c1);
  auto sqrt_c1 = (u1 * l1.sqrt().unsqueeze(0)).matmul(u1.transpose(0, 1));
  // tr (C1^{1/2} C2 C1^{1/2})^{1/2} = sum sqrt(eigenvalues).
  auto [lm, um] = psd_eigh(sqrt_c1.matmul(c2).matmul(sqrt_c1));
  (void)um;
  const double tr_sqrt = lm.sqrt().sum().item<double>();
  const double mean_term = (mu1 - mu2).pow(2).sum().item<double>();
  const double d2 = mean_term + c1.trace().item<double>() +
                    c2.trace().item<double>() - 2.0 * tr_sqrt;
  return std::max(d2, 0.0);
}

double frechet_distance(const torch::Tensor& a, const torch::Tensor& b) {
  return frechet_distance(gaussian_stats(a), gaussian_stats(b));
}

}  // namespace sbgm
