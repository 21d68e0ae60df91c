#pragma once

/// \file
/// Sample-based distances between two point clouds (2-D toy data, tests).

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace sbgm::metrics {

/// Squared maximum mean discrepancy (Gretton et al., JMLR 2012) with the
/// multi-bandwidth RBF kernel k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2)).
///
/// x: [N, D], y: [M, D] (floating, same device; N, M >= 2). With
/// `unbiased` = true (the default) it is the U-statistic
///   1/(N(N-1)) sum_{i!=j} k(x_i, x_j) + 1/(M(M-1)) sum_{i!=j} k(y_i, y_j)
///   - 2/(NM) sum_{i,j} k(x_i, y_j),
/// whose mean over draws is the population MMD^2 (it can be slightly
/// negative); with false, the V-statistic (diagonals kept, always >= 0).
/// Computed in float64; returns a 0-dim float64 tensor on x's device.
torch::Tensor mmd_rbf(
    const torch::Tensor& x,
    const torch::Tensor& y,
    const std::vector<double>& bandwidths = {0.1, 0.2, 0.5, 1.0, 2.0},
    bool unbiased = true);

/// Sliced 2-Wasserstein distance (Rabin et al., 2011):
///   SW_2(x, y) = ( E_theta W_2^2(theta^T x, theta^T y) )^(1/2),
/// theta uniform on the unit sphere, estimated with `num_projections`
/// random directions; each 1-D W_2 is exact between equal-size empirical
/// sets (sorted samples matched). x, y: [N, D] with the same N.
/// Returns a 0-dim float64 tensor on x's device.
torch::Tensor sliced_wasserstein(
    const torch::Tensor& x,
    const torch::Tensor& y,
    int64_t num_projections = 128,
    std::optional<torch::Generator> generator = std::nullopt);

}  // namespace sbgm::metrics
