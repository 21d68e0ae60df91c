#pragma once

/// \file
/// EDM's preconditioning (Karras et al., "Elucidating the Design Space of
/// Diffusion-Based Generative Models", 2022, Table 1 and Sec. 5) as a model
/// wrapper. With s = sigma / alpha (the noise level of x / alpha) and sd =
/// sigma_data, a raw network F becomes the denoiser
///   D(x) = c_skip (x / alpha) + c_out F(c_in x / alpha, c_noise),
///   c_skip = sd^2 / (s^2 + sd^2),  c_out = s sd / sqrt(s^2 + sd^2),
///   c_in = 1 / sqrt(s^2 + sd^2),   c_noise = ln(s) / 4,
/// an x0-prediction model. Train it with diffusion_loss, target X0,
/// LossWeighting::EDM (weight (s^2 + sd^2) / (s sd)^2) and
/// TimeSampling::LogNormal (ln s ~ N(-1.2, 1.2^2)): F then sees unit-
/// variance inputs and targets at every noise level.

#include <torch/types.h>

#include <memory>

#include "sbgm/model.h"
#include "sbgm/process.h"

namespace sbgm {

/// The four coefficients at one noise level s = sigma / alpha.
struct EDMCoefficients {
  double c_skip, c_out, c_in, c_noise;
};
EDMCoefficients edm_coefficients(double s, double sigma_data);

/// Wraps a raw network F(x, c_noise) (c_noise a float tensor [N] of x's
/// dtype) into the preconditioned x0-model under `process`, which must
/// feed continuous times.
///
/// Example:
/// ```
/// auto process = std::make_shared<sbgm::EDMProcess>();
/// sbgm::MLP net(sbgm::MLPOptions(2).embedding(
///     sbgm::TimeEmbeddingKind::Sinusoidal).time_scale(250));
/// sbgm::Model model = sbgm::edm_precondition(
///     [net](const torch::Tensor& x, const torch::Tensor& c) mutable {
///       return net->forward(x, c);
///     }, process);
/// ```
Model edm_precondition(
    ModelFn net,
    std::shared_ptr<const NoiseProcess> process,
    double sigma_data = 0.5);

}  // namespace sbgm
