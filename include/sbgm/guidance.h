#pragma once

/// \file
/// Classifier-free guidance (Ho & Salimans 2022) and condition dropout.
///
/// A conditional model ε(x, t, c) trained with its condition dropped some of
/// the time also knows ε(x, t, ∅). Guidance mixes the two,
///   ε̂ = ε(x, t, ∅) + w (ε(x, t, c) − ε(x, t, ∅)),
/// in whatever the model predicts (the mix is affine, with weights summing to
/// 1, so it means the same in ε, score, x0 or v). w = 0 is the unconditional
/// model, w = 1 the conditional one, w > 1 sharpens the condition.

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>

#include "sbgm/model.h"

namespace sbgm {

/// Options of classifier_free_guidance.
///
/// Example: `GuidanceOptions(2.0).null_class(10)` for labels 0..9.
struct GuidanceOptions {
  /* implicit */ GuidanceOptions(double scale = 1.0) : scale_(scale) {}
  /// The guidance scale w (any finite value). Default: 1.
  TORCH_ARG(double, scale);
  /// Guidance rescale φ in [0, 1] (Lin et al. 2024, "Common diffusion noise
  /// schedules and sample steps are flawed", §3.4): the guided output is
  /// rescaled to the per-sample standard deviation of the conditional one,
  ///   ε_r = ε̂ · std(ε_c) / std(ε̂),  ε = φ ε_r + (1 − φ) ε̂.
  /// Default: 0 (none).
  TORCH_ARG(double, rescale) = 0.0;
  /// The "no condition" label for integer conditions (a net's num_classes),
  /// needed to batch the unconditional half with the conditional one. -1
  /// (the default) suits float conditions, whose "no condition" is zeros.
  TORCH_ARG(int64_t, null_class) = -1;
};

/// A conditional model that guides `model` (which must be conditional):
/// each call evaluates c and ∅ in one model call
/// (Model::evaluate_conditions: a net's forward_conditions, which runs what
/// does not see the condition once, or one batched forward over [x; x]);
/// w = 0 and w = 1 call the model once, with ∅ or c: exactly the
/// unconditional and the conditional model. Use it under any sampler:
/// `classifier_free_guidance(model, 2.0).with_condition(labels)`. Called
/// without a condition, it is the unconditional model.
Model classifier_free_guidance(
    const Model& model, const GuidanceOptions& options = {});

/// Condition dropout for training a conditional network of your own:
/// `labels` (integer [N]) with each entry replaced by `null_class` with
/// probability p, independently; float conditions [N, ...] get zero rows.
/// sbgm's MLP and UNet do this themselves in training mode
/// (`class_dropout`).
torch::Tensor drop_condition(
    const torch::Tensor& cond,
    double p,
    int64_t null_class,
    std::optional<torch::Generator> generator = std::nullopt);

}  // namespace sbgm
