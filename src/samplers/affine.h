#pragma once

// Private: the samplers whose step is affine in the state, the model's
// output and fresh noise (DDPM, DDIM, Euler–Maruyama). Each builds a table of
// per-step coefficients on the host once; an eager stepper multiplies by host
// doubles (no device sync, fewest kernels on the CPU), and on CUDA the same
// table can drive one captured CUDA graph replayed per step (graph.h).

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/samplers/common.h"

namespace sbgm::samplers::detail {

/// Step i (in the order the sampler runs them), with out = model(x, t_i):
///   x <- c_x x + c_out out + c_noise z,
/// or, with clip:
///   x0 = clamp(x0_x x + x0_out out, -clip_range, clip_range),
///   x  <- c2 x + c1 x0 + c_noise z.
struct AffineSteps {
  /// The model's time per step: an integer step index when `discrete`
  /// (passed as int64), else a time passed in x's dtype.
  std::vector<double> t;
  std::vector<double> c_x, c_out, c_noise, x0_x, x0_out, c1, c2;
  bool discrete = false;
  bool clip = false;
  double clip_range = 1.0;

  explicit AffineSteps(size_t n);
  int64_t size() const {
    return static_cast<int64_t>(t.size());
  }
};

/// Sets c_x, c_out of step i for x <- a x + b eps with the model's output
/// converted to eps at the kernel (m, s): eps = out (Epsilon), -s out
/// (Score), (x - m out) / s (X0).
void fold_eps(
    AffineSteps& st,
    size_t i,
    Prediction p,
    double m,
    double s,
    double a,
    double b);

/// Sets x0_x, x0_out of step i: x0 = (x - s eps) / m from the model's output.
void fold_x0(AffineSteps& st, size_t i, Prediction p, double m, double s);

/// Runs the steps one at a time on the host's coefficients.
class AffineStepper {
 public:
  AffineStepper(
      Model model,
      std::shared_ptr<const AffineSteps> steps,
      std::optional<torch::Generator> generator);

  const AffineSteps& steps() const {
    return *steps_;
  }
  /// Step i in place; x must not require grad (runs under InferenceMode).
  void step(torch::Tensor& x, int64_t i);

 private:
  Model model_;
  std::shared_ptr<const AffineSteps> steps_;
  std::optional<torch::Generator> generator_;
  torch::Tensor tbuf_, noise_;
};

/// The whole loop of ddpm/ddim/euler_maruyama from the state x: trajectory,
/// progress and the final check, eager or (common.cuda_graph() and x on
/// CUDA) as one captured step replayed.
SampleResult run_affine(
    const Model& model,
    std::shared_ptr<const AffineSteps> steps,
    torch::Tensor x,
    const CommonOptions& common,
    const char* where);

/// Throws for samplers that have no CUDA graph path when one is asked for.
void check_no_cuda_graph(const CommonOptions& common, const char* where);

}  // namespace sbgm::samplers::detail
