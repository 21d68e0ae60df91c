#pragma once

// Private: the one folded stepper of the samplers whose step is linear in
// the state, the model's output, the x0 estimates of the two steps before
// and fresh noise (DDPM, DDIM, Euler-Maruyama with Tweedie's last step,
// Euler-ancestral, the DPM-Solver++ family). Each builds a table of per-step
// coefficients on the host once, by evaluating the public update functions
// (sbgm/samplers/updates.h) on doubles (fold below); an eager stepper
// multiplies by host doubles (no device sync, fewest kernels on the CPU), and
// on CUDA the same table can drive one captured CUDA graph replayed per step
// (graph.h).

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/samplers/common.h"

namespace sbgm::samplers::detail {

/// The coefficients of a linear map (x, u, z) -> c_x x + c_u u + c_z z.
struct Linear3 {
  double x, u, z;
};

/// Evaluates f (linear in its three arguments) at the unit vectors.
template <class F>
Linear3 fold(F f) {
  return {f(1.0, 0.0, 0.0), f(0.0, 1.0, 0.0), f(0.0, 0.0, 1.0)};
}

/// The coefficients of a map linear in (x, m0, m1, m2, z), evaluated at the
/// unit vectors (the DPM-Solver++ updates).
template <class F>
std::array<double, 5> fold5(F f) {
  std::array<double, 5> c{};
  for (size_t k = 0; k < 5; ++k) {
    std::array<double, 5> unit{};
    unit[k] = 1.0;
    c[k] = f(unit[0], unit[1], unit[2], unit[3], unit[4]);
  }
  return c;
}

/// Step i (in the order the sampler runs them), with out = model(x, t_i):
///   x <- c_x x + c_out out + c_m1 m1 + c_m2 m2 + c_noise z,
/// or, with clip:
///   x0 = clamp(x0_x x + x0_out out, -clip_range, clip_range),
///   x  <- c2 x + c1 x0 + c_noise z,
/// where m1, m2 are the model's x0 (x0_x x + x0_out out) of the steps
/// i - 1 and i - 2 (the multistep history; with `history` set the stepper
/// keeps them). x0_x, x0_out always hold the model's x0 (for the step
/// callback).
struct AffineSteps {
  /// The model time per step (a step index when integer_time).
  std::vector<double> t;
  /// The process time the state reaches after each step.
  std::vector<double> t_next;
  std::vector<double> c_x, c_out, c_noise, x0_x, x0_out, c1, c2, c_m1, c_m2;
  bool integer_time = false;
  /// Some step reads m1 or m2 (not with clip nor a CUDA graph).
  bool history = false;
  bool clip = false;
  double clip_range = 1.0;

  explicit AffineSteps(size_t n);
  int64_t size() const {
    return static_cast<int64_t>(t.size());
  }
  /// Sets the model time and x0 map of step i (from point `at`) and the
  /// time it lands on.
  void set_point(
      size_t i,
      const NoiseProcess& process,
      Prediction p,
      const ProcessPoint& at,
      double t_next);
};

/// Runs the steps one at a time on the host's coefficients.
class AffineStepper {
 public:
  AffineStepper(
      Model model,
      std::shared_ptr<const AffineSteps> steps,
      const CommonOptions& common);

  const AffineSteps& steps() const {
    return *steps_;
  }
  /// Step i in place; x must not require grad (runs under InferenceMode).
  /// With x0 non-null, also returns the model's x0 of the step there.
  void step(torch::Tensor& x, int64_t i, torch::Tensor* x0 = nullptr);

 private:
  Model model_;
  std::shared_ptr<const AffineSteps> steps_;
  NoiseSource source_;
  torch::Tensor tbuf_, noise_, m1_, m2_;
};

/// The whole loop of a folded sampler from the state x: trajectory,
/// progress, callback and the final check, eager or (common.cuda_graph()
/// and x on CUDA) as one captured step replayed.
SampleResult run_affine(
    const Model& model,
    std::shared_ptr<const AffineSteps> steps,
    torch::Tensor x,
    const CommonOptions& common,
    const char* where);

/// Throws for samplers that have no CUDA graph path when one is asked for.
void check_no_cuda_graph(const CommonOptions& common, const char* where);

/// Fills `buf` (re-allocated like x when missing or of another shape, dtype
/// or device) with N(0, I) noise from `source`, in place.
void fill_normal(
    torch::Tensor& buf, const torch::Tensor& x, NoiseSource& source);

}  // namespace sbgm::samplers::detail
