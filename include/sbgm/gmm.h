#pragma once

/// \file
/// Gaussian mixtures with a closed-form perturbed score: the exact-score model
/// that the samplers are tested and benchmarked with.
///
/// p(x_0) = sum_k w_k N(x_0; mu_k, diag(sigma_k^2)). Under a Gaussian kernel
/// x_t = m x_0 + s z (z ~ N(0, I)) the marginal is again a mixture,
///   p_t(x) = sum_k w_k N(x; m mu_k, diag(m^2 sigma_k^2 + s^2)),
/// with score
///   grad log p_t(x) = -sum_k r_k(x) (x - m mu_k) / (m^2 sigma_k^2 + s^2),
/// r_k the responsibilities (a softmax of the log-weighted component
/// densities, so it is computed stably), and eps = -s * score. Under a
/// noise process, m = alpha(t) and s = sigma(t).

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "sbgm/model.h"

namespace sbgm {

class NoiseProcess;

/// A mixture of K diagonal Gaussians in D dimensions. Parameters are held in
/// float64; every method computes in float64 and returns x's dtype/device.
///
/// Example:
/// ```
/// auto gmm = sbgm::GaussianMixture(
///     torch::tensor({0.3, 0.7}), torch::tensor({{-2.0, 0.0}, {2.0, 1.0}}),
///     torch::tensor({0.5, 0.3}));
/// auto model = gmm.model(std::make_shared<sbgm::VPSDE>(),
///                        sbgm::Prediction::Epsilon);
/// ```
class GaussianMixture {
 public:
  /// weights: [K], positive (normalized here); means: [K, D]; stds: [K]
  /// (isotropic) or [K, D] (diagonal), positive. All floating point.
  GaussianMixture(
      const torch::Tensor& weights,
      const torch::Tensor& means,
      const torch::Tensor& stds);

  int64_t num_components() const;
  int64_t dim() const;
  /// Normalized weights [K], means [K, D] and per-coordinate stds [K, D]
  /// (float64, on device()).
  const torch::Tensor& weights() const;
  const torch::Tensor& means() const;
  const torch::Tensor& stds() const;
  torch::Device device() const;
  /// The same mixture with its parameters on `device`.
  GaussianMixture to(torch::Device device) const;

  /// Exact mean sum_k w_k mu_k, [D].
  torch::Tensor mean() const;
  /// Exact covariance sum_k w_k (diag(sigma_k^2) + mu_k mu_k^T) - mean mean^T,
  /// [D, D].
  torch::Tensor covariance() const;

  /// n samples [n, D] of the given dtype (default float32) on device().
  torch::Tensor sample(
      int64_t n,
      std::optional<torch::Generator> generator = std::nullopt,
      torch::ScalarType dtype = torch::kFloat) const;
  /// Like sample(), also returning the component index [n] (int64).
  std::pair<torch::Tensor, torch::Tensor> sample_with_components(
      int64_t n,
      std::optional<torch::Generator> generator = std::nullopt,
      torch::ScalarType dtype = torch::kFloat) const;

  /// log p(x) of the mixture, [N] for x of shape [N, D].
  torch::Tensor log_prob(const torch::Tensor& x) const;
  /// log p_t(x) of the perturbed mixture for x_t = m x_0 + s z; m >= 0,
  /// s >= 0 (not both sigma and s zero). Doubles for one t, or tensors of
  /// shape [] or [N] for one t per sample.
  torch::Tensor log_prob(const torch::Tensor& x, double m, double s) const;
  torch::Tensor log_prob(
      const torch::Tensor& x,
      const torch::Tensor& m,
      const torch::Tensor& s) const;

  /// Responsibilities r_k(x) of the perturbed mixture, [N, K].
  torch::Tensor responsibilities(
      const torch::Tensor& x, double m = 1.0, double s = 0.0) const;
  torch::Tensor responsibilities(
      const torch::Tensor& x,
      const torch::Tensor& m,
      const torch::Tensor& s) const;

  /// grad_x log p_t(x), [N, D].
  torch::Tensor score(const torch::Tensor& x, double m, double s) const;
  torch::Tensor score(
      const torch::Tensor& x,
      const torch::Tensor& m,
      const torch::Tensor& s) const;

  /// eps = -s * score, the noise an ideal eps-network predicts; s > 0.
  torch::Tensor epsilon(const torch::Tensor& x, double m, double s) const;
  torch::Tensor epsilon(
      const torch::Tensor& x,
      const torch::Tensor& m,
      const torch::Tensor& s) const;

  /// The exact model under a noise process: the score at (alpha(t),
  /// sigma(t)) converted to `prediction` (convert_prediction; x0 is the
  /// posterior mean E[x0 | x_t]). The model reads its time input as the
  /// process's time (model_time is the identity, or the rounded step of a
  /// discrete schedule, whose alpha and sigma it then uses).
  Model model(
      std::shared_ptr<const NoiseProcess> process,
      Prediction prediction = Prediction::Score) const;

  /// The class-conditional model whose classes are the components: the
  /// condition k in [0, K) gives component k alone (a Gaussian, so its exact
  /// model), K or no condition the whole mixture. Classifier-free guidance
  /// (null_class K) of it at w = 1 samples component k and at w = 0 the
  /// mixture, exactly.
  Model conditional_model(
      std::shared_ptr<const NoiseProcess> process,
      Prediction prediction = Prediction::Score) const;

 private:
  /// log w_k + log N(x; m mu_k, v_k) for every sample and component, [N, K],
  /// in float64; m and s are float64 tensors of shape [N, 1, 1] or [].
  torch::Tensor joint_log(
      const torch::Tensor& x64,
      const torch::Tensor& m,
      const torch::Tensor& s,
      torch::Tensor* var,
      torch::Tensor* diff) const;
  torch::Tensor check_x(const torch::Tensor& x, const char* where) const;
  std::pair<torch::Tensor, torch::Tensor> coeffs(
      const torch::Tensor& x,
      const torch::Tensor& m,
      const torch::Tensor& s,
      const char* where) const;

  torch::Tensor weights_;
  torch::Tensor log_weights_;
  torch::Tensor means_;
  torch::Tensor stds_;
};

}  // namespace sbgm
