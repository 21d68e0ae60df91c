#pragma once

/// \file
/// The model contract that joins networks, losses and samplers.
///
/// A model is any callable `(x, t) -> tensor` of x's shape, together with
/// what it predicts. t has one entry per sample (shape [N], possibly an
/// expanded 0-stride view of one shared time) and is the process's model
/// time (NoiseProcess::model_time): int64 step indices for a discrete
/// schedule, floating times of x's dtype otherwise (sigma itself for EDM).
///
/// With x = alpha x0 + sigma eps (alpha, sigma of the process at t):
///   score = -eps / sigma,  x0 = (x - sigma eps) / alpha,
///   v = alpha eps - sigma x0 (Salimans & Ho 2022), so
///   x0 = (alpha x - sigma v) / (alpha^2 + sigma^2) and
///   eps = (sigma x + alpha v) / (alpha^2 + sigma^2).
/// Every conversion in the library goes through prediction_coeffs below.

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

namespace sbgm {

class NoiseProcess;

/// What a model's output means.
enum class Prediction {
  /// The noise eps that was added: x = alpha x0 + sigma eps.
  Epsilon,
  /// The score grad_x log p_t(x).
  Score,
  /// The clean data x0.
  X0,
  /// The velocity v = alpha eps - sigma x0.
  V,
};

/// "epsilon", "score", "x0", "v".
std::string to_string(Prediction p);
/// Parses a name given by to_string (also "eps"); throws on anything else.
Prediction prediction_from_string(const std::string& name);

/// The linear map from a model's output to another parameterization at one
/// point of the process: to = x_coeff * x + out_coeff * out. T is double
/// (one time) or a tensor of per-sample coefficients that broadcasts
/// against x. `x_coeff_is_zero` is true when the map does not involve x at
/// all (between eps and the score, or from a prediction to itself), so
/// callers can skip that term.
template <class T>
struct PredictionMap {
  T x_coeff;
  T out_coeff;
  bool x_coeff_is_zero;
};

/// The coefficients of `from` -> `to` at (alpha, sigma), sigma > 0 and
/// alpha > 0 where the map divides by them.
template <class T>
PredictionMap<T> prediction_coeffs(
    Prediction from, Prediction to, const T& alpha, const T& sigma) {
  // eps = ex x + eo out and x0 = dx x + do out for the output `from`.
  const T norm = alpha * alpha + sigma * sigma;
  T ex = alpha * 0.0, eo = ex, dx = ex, dout = ex;
  switch (from) {
    case Prediction::Epsilon:  // eps = out, x0 = (x - sigma out) / alpha
      eo = ex + 1.0;
      dx = 1.0 / alpha;
      dout = -sigma / alpha;
      break;
    case Prediction::Score:  // eps = -sigma out, x0 = (x + sigma^2 out) / a
      eo = -sigma;
      dx = 1.0 / alpha;
      dout = sigma * sigma / alpha;
      break;
    case Prediction::X0:  // eps = (x - alpha out) / sigma, x0 = out
      ex = 1.0 / sigma;
      eo = -alpha / sigma;
      dout = ex * 0.0 + 1.0;
      break;
    case Prediction::V:  // eps = (sigma x + alpha v) / n, x0 = (alpha x -
                         // sigma v) / n
      ex = sigma / norm;
      eo = alpha / norm;
      dx = alpha / norm;
      dout = -sigma / norm;
      break;
  }
  const bool eps_only =
      from == Prediction::Epsilon || from == Prediction::Score;
  if (from == to) {
    return {alpha * 0.0, alpha * 0.0 + 1.0, true};
  }
  switch (to) {
    case Prediction::Epsilon:
      return {ex, eo, eps_only};
    case Prediction::Score:
      return {-ex / sigma, -eo / sigma, eps_only};
    case Prediction::X0:
      return {dx, dout, false};
    case Prediction::V:
      return {alpha * ex - sigma * dx, alpha * eo - sigma * dout, false};
  }
  return {ex, eo, eps_only};
}

using ModelFn = std::function<torch::Tensor(
    const torch::Tensor& x, const torch::Tensor& t)>;

/// A callable plus what it predicts, and (for networks that embed a fixed
/// set of steps) how many integer steps it takes.
///
/// Example:
/// ```
/// sbgm::MLP net(sbgm::MLPOptions(2));
/// sbgm::Model model(net, sbgm::Prediction::Epsilon);
/// ```
class Model {
 public:
  /// `discrete_steps` > 0 declares that the callable takes int64 step
  /// indices in [0, discrete_steps) (a learned per-step embedding); samplers
  /// and losses then refuse a process that cannot give it such steps.
  Model(ModelFn fn, Prediction prediction, int64_t discrete_steps = 0);
  /// Wraps a torch::nn module holder (anything with `forward(x, t)`),
  /// keeping a copy of the holder (which shares the module). A module with
  /// a `discrete_steps()` member (sbgm::MLP, sbgm::UNet) declares its steps.
  template <
      class Module,
      class = decltype(std::declval<Module&>()->forward(
          std::declval<torch::Tensor>(), std::declval<torch::Tensor>()))>
  Model(Module module, Prediction prediction)
      : Model(
            [module](const torch::Tensor& x, const torch::Tensor& t) mutable {
              return module->forward(x, t);
            },
            prediction,
            steps_of(module, 0)) {}

  /// Calls the model and checks that its output is defined, has x's shape,
  /// dtype and device. (No value check: that would need a device sync.)
  torch::Tensor operator()(
      const torch::Tensor& x, const torch::Tensor& t) const;

  Prediction prediction() const {
    return prediction_;
  }
  /// Number of integer steps the callable takes; 0 for continuous times.
  int64_t discrete_steps() const {
    return discrete_steps_;
  }
  const ModelFn& fn() const {
    return fn_;
  }

  /// Throws unless `process` can feed this model: a model of discrete steps
  /// needs a process with integer model times and at most that many steps.
  /// The message names both.
  void check_process(const NoiseProcess& process, const char* where) const;

 private:
  template <class M>
  static auto steps_of(const M& m, int) -> decltype(m->discrete_steps()) {
    return m->discrete_steps();
  }
  template <class M>
  static int64_t steps_of(const M&, long) {
    return 0;
  }

  ModelFn fn_;
  Prediction prediction_;
  int64_t discrete_steps_;
};

/// Converts a model output between parameterizations at one time (alpha,
/// sigma as doubles) or per sample (tensors that broadcast against x).
torch::Tensor convert_prediction(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    double alpha,
    double sigma);
torch::Tensor convert_prediction(
    const torch::Tensor& out,
    Prediction from,
    Prediction to,
    const torch::Tensor& x,
    const torch::Tensor& alpha,
    const torch::Tensor& sigma);

}  // namespace sbgm
