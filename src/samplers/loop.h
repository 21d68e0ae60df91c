#pragma once

// Private helpers shared by the samplers: start, trajectory, progress and the
// end-of-run finiteness check.

#include <string>

#include "../internal.h"
#include "sbgm/samplers/common.h"

namespace sbgm::samplers::detail {

/// Validates a sample shape (non-empty, positive sizes).
void check_shape(torch::IntArrayRef shape, const char* where);

/// The starting state: options.x_init (checked against shape) or
/// prior_std * N(0, I) drawn with the options' generator.
torch::Tensor initial_state(
    torch::IntArrayRef shape,
    double prior_std,
    const CommonOptions& options,
    const char* where);

/// N(0, I) noise like x from the generator.
torch::Tensor noise_like(
    const torch::Tensor& x, const std::optional<torch::Generator>& gen);

/// Fills `buf` (re-allocated like x when missing or of another shape, dtype
/// or device) with N(0, I) noise from the generator, in place.
void fill_normal(
    torch::Tensor& buf,
    const torch::Tensor& x,
    const std::optional<torch::Generator>& gen);

/// Throws unless every value of x is finite (one device sync).
void check_finite(const torch::Tensor& x, const char* where);

/// Trajectory and progress bookkeeping for one run.
class Loop {
 public:
  Loop(const CommonOptions& options, int64_t total, const char* where);
  /// Records the starting state.
  void start(const torch::Tensor& x);
  /// After step `step` (1-based): progress, and a trajectory record every k.
  void step(int64_t step, const torch::Tensor& x);
  /// Checks the final state, records it and builds the result.
  SampleResult finish(torch::Tensor x, int64_t nfe);

 private:
  const CommonOptions& options_;
  int64_t total_;
  const char* where_;
  int64_t last_recorded_ = -1;
  int64_t last_step_ = 0;
  std::vector<torch::Tensor> trajectory_;
};

}  // namespace sbgm::samplers::detail
