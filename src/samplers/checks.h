#pragma once

// Private: argument checks and grid resolution that several samplers share
// (the sampler files and likelihood.cpp).

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "sbgm/model.h"
#include "sbgm/process.h"
#include "sbgm/samplers/common.h"

namespace sbgm::samplers::detail {

/// Default grid length of ddpm (without a discrete schedule),
/// euler_maruyama and pc.
constexpr int64_t kDefaultSteps = 1000;

/// Default grid lengths: EDM's Heun (18 steps, 35 evaluations; Euler uses
/// the same grid) and the DPM-Solver++ family (20).
constexpr int64_t kHeunSteps = 18;
constexpr int64_t kDPMSteps = 20;

/// The grid's points, checked against the process, and the model against
/// the process.
inline std::vector<ProcessPoint> grid_points(
    const Model& model,
    const NoiseProcess& process,
    const GridSpec& grid,
    int64_t default_steps,
    const char* where) {
  model.check_process(process, where);
  return grid.resolve(process, default_steps).points(process, where);
}

/// eta (DDIM's, Euler-ancestral's) must be finite and >= 0.
inline void check_eta(double eta, const char* where) {
  TORCH_CHECK(
      eta >= 0 && std::isfinite(eta),
      where,
      ": eta must be finite and >= 0, got ",
      eta);
}

/// s_noise (Euler-ancestral's, EDM's churn) must be finite and > 0.
inline void check_noise(double s_noise, const char* where) {
  TORCH_CHECK(
      s_noise > 0 && std::isfinite(s_noise),
      where,
      ": s_noise must be finite and > 0, got ",
      s_noise);
}

/// An adaptive solver's tolerances and step budget.
inline void check_tolerances(
    double rtol, double atol, int64_t max_steps, const char* where) {
  TORCH_CHECK(
      rtol > 0 && atol > 0,
      where,
      ": rtol and atol must be > 0, got rtol = ",
      rtol,
      ", atol = ",
      atol);
  TORCH_CHECK(
      max_steps >= 1, where, ": max_steps must be >= 1, got ", max_steps);
}

}  // namespace sbgm::samplers::detail
