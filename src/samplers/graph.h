#pragma once

// Private: one affine sampler step (affine.h) captured as a CUDA graph and
// replayed per step. The per-step coefficients and times live in device
// tables that the graph indexes with a device step counter, so one capture
// serves every step; noise is drawn outside the graph, with the run's
// generator, into a static buffer, so a graphed run draws the same numbers as
// an eager one.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "affine.h"

namespace sbgm::samplers::detail {

class GraphedAffineStepper {
 public:
  /// Captures one step on x's device. x is the run's state and stays bound
  /// to the graph: every step() updates it in place. Throws unless x is a
  /// CUDA tensor and sbgm was built with CUDA.
  GraphedAffineStepper(
      Model model,
      std::shared_ptr<const AffineSteps> steps,
      torch::Tensor x,
      std::optional<torch::Generator> generator);
  ~GraphedAffineStepper();
  GraphedAffineStepper(const GraphedAffineStepper&) = delete;
  GraphedAffineStepper& operator=(const GraphedAffineStepper&) = delete;

  /// Step i of the table on the bound state: a noise draw (when step i
  /// has noise), a counter fill and one graph replay.
  void step(int64_t i);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sbgm::samplers::detail
