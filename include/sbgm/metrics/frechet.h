#pragma once

/// \file
/// Fréchet distance between Gaussian fits of two feature sets (the quantity
/// behind FID, Heusel et al., "GANs Trained by a Two Time-Scale Update Rule
/// Converge to a Local Nash Equilibrium", NeurIPS 2017):
///   d^2 = |mu_1 - mu_2|^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2}).
/// Everything is computed in float64 on the CPU. The matrix square roots come
/// from symmetric eigendecompositions: C_1^{1/2} = U diag(sqrt(max(l, 0))) U^T,
/// and the trace of (C_1^{1/2} C_2 C_1^{1/2})^{1/2} (a symmetric PSD matrix,
/// similar to (C_1 C_2)^{1/2}) is the sum of the square roots of its clamped
/// eigenvalues. This avoids the complex round-off of a general sqrtm.

#include <torch/types.h>

namespace sbgm {

/// Mean and covariance of a feature set, float64 on the CPU.
struct GaussianStats {
  /// [D]
  torch::Tensor mean;
  /// [D, D], the unbiased sample covariance (divided by N - 1).
  torch::Tensor cov;
};

/// Fits a Gaussian to features of shape [N, D] (N >= 2, finite values).
GaussianStats gaussian_stats(const torch::Tensor& features);

/// Fréchet distance d^2 (the squared 2-Wasserstein distance) between
/// N(a.mean, a.cov) and N(b.mean, b.cov). Covariances must be symmetric
/// [D, D] with matching D; tiny negative eigenvalues from round-off are
/// clamped to 0. The result is >= 0 (clamped at 0).
double frechet_distance(const GaussianStats& a, const GaussianStats& b);

/// Fréchet distance between the Gaussian fits of two feature sets [N, D]
/// and [M, D].
double frechet_distance(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace sbgm
