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
#include <vector>

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
/// A conditional model's callable: `cond` has one row per sample (int64
/// class indices [N], or a float tensor [N, ...]) or is undefined, which
/// means "no condition" (the network's null class).
using CondModelFn = std::function<torch::Tensor(
    const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cond)>;
/// A conditional model's callable for several conditions of one batch:
/// x [N, ...], t, and K conditions of N rows each (all defined) -> K outputs
/// of x's shape, the k-th equal to the model at (x, t, conds[k]). A network
/// whose condition enters late (UNetOptions::class_up_path_only) runs the
/// part that does not see it once for all K (Model::evaluate_conditions).
using CondSetModelFn = std::function<std::vector<torch::Tensor>(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const std::vector<torch::Tensor>& conds)>;

/// A callable plus what it predicts, and (for networks that embed a fixed
/// set of steps) how many integer steps it takes.
///
/// A conditional model (Model::conditional, or a module whose forward takes
/// (x, t, cond)) carries an optional condition: `with_condition(c)` returns
/// a copy that passes c to every call, so losses and every sampler take it
/// through unchanged. c must have one row per sample of each call.
///
/// Example:
/// ```
/// sbgm::MLP net(sbgm::MLPOptions(2));
/// sbgm::Model model(net, sbgm::Prediction::Epsilon);
/// // Class-conditional: labels [N] in [0, 10); 10 is the null class.
/// sbgm::UNet unet(sbgm::UNetOptions(1).num_classes(10));
/// auto sevens = sbgm::Model(unet, sbgm::Prediction::Epsilon)
///                   .with_condition(torch::full({64}, 7, torch::kLong));
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
  /// A module whose forward also takes a condition (sbgm::MLP, sbgm::UNet)
  /// makes a conditional model.
  template <
      class Module,
      class = decltype(std::declval<Module&>()->forward(
          std::declval<torch::Tensor>(), std::declval<torch::Tensor>()))>
  Model(Module module, Prediction prediction)
      : Model(fns_of(module, 0), prediction, steps_of(module, 0)) {}

  /// A conditional model: `fn(x, t, cond)`. `set_fn`, if given, evaluates
  /// several conditions at once and must agree with `fn` on each (see
  /// evaluate_conditions).
  static Model conditional(
      CondModelFn fn,
      Prediction prediction,
      int64_t discrete_steps = 0,
      CondSetModelFn set_fn = {});

  /// Calls the model (with its condition, if it carries one) and checks
  /// that its output is defined, has x's shape, dtype and device. (No value
  /// check: that would need a device sync.)
  torch::Tensor operator()(
      const torch::Tensor& x, const torch::Tensor& t) const;
  /// Calls a conditional model with `cond` in place of its own condition
  /// (undefined: none). Throws for an unconditional model.
  torch::Tensor operator()(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const torch::Tensor& cond) const;

  /// A conditional model at each of `conds` (K conditions of x's batch
  /// size, each defined) for the same x and t: K outputs of x's shape. A
  /// module with `forward_conditions(x, t, conds)` (sbgm::UNet) or a
  /// `set_fn` given to Model::conditional does it in one call that shares
  /// what does not depend on the condition; any other conditional model
  /// makes one batched call over K copies of x (a time shared by the batch
  /// stays shared). Classifier-free guidance uses it for its two halves.
  std::vector<torch::Tensor> evaluate_conditions(
      const torch::Tensor& x,
      const torch::Tensor& t,
      const std::vector<torch::Tensor>& conds) const;
  /// Whether evaluate_conditions hands the conditions to the model itself
  /// (a module's forward_conditions or a set_fn), which may share work
  /// between them (sbgm::UNet does with class_up_path_only), rather than
  /// batching copies of x.
  bool shares_condition_work() const {
    return static_cast<bool>(set_fn_);
  }

  /// Whether the callable takes a condition.
  bool is_conditional() const {
    return static_cast<bool>(cond_fn_);
  }
  /// A copy that passes `cond` (one row per sample; undefined: none) to
  /// every call. Throws for an unconditional model.
  Model with_condition(torch::Tensor cond) const;
  /// The condition this model passes (undefined when none).
  const torch::Tensor& condition() const {
    return condition_;
  }

  Prediction prediction() const {
    return prediction_;
  }
  /// Number of integer steps the callable takes; 0 for continuous times.
  int64_t discrete_steps() const {
    return discrete_steps_;
  }
  /// The unconditional callable (empty for a conditional model).
  const ModelFn& fn() const {
    return fn_;
  }
  /// The conditional callable (empty for an unconditional model).
  const CondModelFn& cond_fn() const {
    return cond_fn_;
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
  struct Fns {  // fn or cond_fn is set; set_fn only with cond_fn
    ModelFn fn;
    CondModelFn cond_fn;
    CondSetModelFn set_fn;
  };
  // A module with forward(x, t, cond) and conditional() (sbgm's nets) is
  // conditional when conditional() says so; one without conditional() is
  // conditional whenever its forward takes a condition.
  template <class M>
  static auto fns_of(M m, int)
      -> decltype(m->forward(std::declval<torch::Tensor>(), std::declval<torch::Tensor>(), std::declval<torch::Tensor>()), m->conditional(), Fns()) {
    return m->conditional() ? cond_fns(m) : plain_fns(m);
  }
  template <class M>
  static auto fns_of(M m, long)
      -> decltype(m->forward(std::declval<torch::Tensor>(), std::declval<torch::Tensor>(), std::declval<torch::Tensor>()), Fns()) {
    return cond_fns(m);
  }
  template <class M>
  static Fns fns_of(M m, ...) {
    return plain_fns(m);
  }
  template <class M>
  static Fns cond_fns(M m) {
    return {
        ModelFn(),
        [m](const torch::Tensor& x,
            const torch::Tensor& t,
            const torch::Tensor& c) mutable { return m->forward(x, t, c); },
        set_fn_of(m, 0)};
  }
  // A module with forward_conditions(x, t, conds) evaluates several
  // conditions in one call.
  template <class M>
  static auto set_fn_of(M m, int)
      -> decltype(m->forward_conditions(std::declval<torch::Tensor>(), std::declval<torch::Tensor>(), std::declval<std::vector<torch::Tensor>>()), CondSetModelFn()) {
    return [m](const torch::Tensor& x,
               const torch::Tensor& t,
               const std::vector<torch::Tensor>& conds) mutable {
      return m->forward_conditions(x, t, conds);
    };
  }
  template <class M>
  static CondSetModelFn set_fn_of(M, long) {
    return {};
  }
  template <class M>
  static Fns plain_fns(M m) {
    return {
        [m](const torch::Tensor& x, const torch::Tensor& t) mutable {
          return m->forward(x, t);
        },
        CondModelFn(),
        CondSetModelFn()};
  }
  Model(Fns fns, Prediction prediction, int64_t discrete_steps);
  torch::Tensor checked(const torch::Tensor& out, const torch::Tensor& x) const;

  ModelFn fn_;
  CondModelFn cond_fn_;
  CondSetModelFn set_fn_;
  torch::Tensor condition_;
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
