#pragma once

/// \file
/// The model contract that joins networks, losses and samplers.
///
/// A model is any callable `(x, t) -> tensor` of x's shape, together with
/// what it predicts. Discrete-time code (DDPM/DDIM, epsilon loss) passes t as
/// an int64 tensor of step indices in [0, T); continuous-time code (SDE
/// samplers, score matching) passes t as a floating tensor in [eps, 1] of
/// x's dtype. In both cases t has one entry per sample (shape [N]).
///
/// With x_t = m x_0 + s eps (m, s the kernel's mean coefficient and std):
///   score = -eps / s,   eps = (x_t - m x_0) / s,   x_0 = (x_t - s eps) / m.

#include <torch/types.h>

#include <functional>
#include <string>
#include <utility>

namespace sbgm {

/// What a model's output means.
enum class Prediction {
  /// The noise eps that was added: x_t = m x_0 + s eps.
  Epsilon,
  /// The score grad_x log p_t(x).
  Score,
  /// The clean data x_0.
  X0,
};

std::string to_string(Prediction p);

using ModelFn = std::function<torch::Tensor(
    const torch::Tensor& x, const torch::Tensor& t)>;

/// A callable plus what it predicts.
///
/// Example:
/// ```
/// sbgm::MLP net(sbgm::MLPOptions(2));
/// sbgm::Model model(net, sbgm::Prediction::Epsilon);
/// ```
class Model {
 public:
  Model(ModelFn fn, Prediction prediction);
  /// Wraps a torch::nn module holder (anything with `forward(x, t)`), keeping
  /// a copy of the holder (which shares the module).
  template <
      class Module,
      class = decltype(std::declval<Module&>()->forward(
          std::declval<torch::Tensor>(), std::declval<torch::Tensor>()))>
  Model(Module module, Prediction prediction)
      : Model(
            [module](const torch::Tensor& x, const torch::Tensor& t) mutable {
              return module->forward(x, t);
            },
            prediction) {}

  /// Calls the model and checks that its output is defined, has x's shape,
  /// dtype and device. (No value check: that would need a device sync.)
  torch::Tensor operator()(
      const torch::Tensor& x, const torch::Tensor& t) const;

  Prediction prediction() const {
    return prediction_;
  }
  const ModelFn& fn() const {
    return fn_;
  }

 private:
  ModelFn fn_;
  Prediction prediction_;
};

/// Converts a model output between parameterizations at one time, given the
/// kernel's mean coefficient m and std s there (doubles for a scalar t, or
/// tensors that broadcast against x for per-sample t).
torch::Tensor convert_prediction(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    double m,
    double s);
torch::Tensor convert_prediction(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    const torch::Tensor& m,
    const torch::Tensor& s);

}  // namespace sbgm
