#pragma once

/// \file
/// Time grids: the decreasing times a sampler visits, as values.
///
/// A grid t_0 > t_1 > ... > t_N (N >= 1 steps) runs from the prior side to
/// its end. The constructors here (num_steps = N) give N model-evaluation
/// times spread over [t_end, t_start] (default [process.t_min(),
/// process.t_max()]) and then the data time (alpha = 1, sigma = 0): the last
/// step lands on x0 with no residual noise, no time repeats and no step
/// index runs past a schedule's table. With `to_data(false)` the grid ends
/// at t_end instead and the sampler returns the state there, noisy (used to
/// measure a solver's order).
///
///   uniform    t_i = t_start + i / (N - 1) (t_end - t_start)
///   log_snr    lambda_i uniform from lambda(t_start) to lambda(t_end)
///   karras     sigma_i = (smax^(1/rho) + i / (N - 1) (smin^(1/rho) -
///              smax^(1/rho)))^rho in sigma = sigma / alpha (Karras et al.
///              2022, eq. 5), rho = 7
///   quadratic  t_i = t_end + (t_start - t_end) (1 - i / (N - 1))^2
///   linspace, leading, trailing: diffusers' spacings of a discrete
///              schedule's T steps (DiscreteProcess only):
///              linspace round(linspace(0, T - 1, N)) reversed,
///              leading  arange(N) * (T // N) reversed,
///              trailing round(arange(T, 0, -T / N)) - 1.
/// (With N = 1 a grid is [t_start, data]: one step straight to x0.)
///
/// Example:
/// ```
/// sbgm::EDMProcess edm;
/// auto grid = sbgm::grids::karras(edm, 18);   // 18 sigmas, then 0
/// auto g2 = sbgm::grids::from_name("trailing", process, 10);
/// ```

#include <torch/arg.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sbgm/process.h"

namespace sbgm {

/// A decreasing sequence of process times.
class TimeGrid {
 public:
  /// Checks that `times` has at least 2 entries (one step) and strictly
  /// decreases; the values may include -inf as the last entry (the data
  /// time of GeometricVESDE) but no NaN.
  explicit TimeGrid(std::vector<double> times);

  const std::vector<double>& times() const {
    return times_;
  }
  /// Number of steps: times().size() - 1.
  int64_t num_steps() const {
    return static_cast<int64_t>(times_.size()) - 1;
  }
  double operator[](int64_t i) const;
  double front() const {
    return times_.front();
  }
  double back() const {
    return times_.back();
  }
  /// True when the last time is the process's data time.
  bool ends_at_data(const NoiseProcess& process) const;
  /// Throws unless every time lies in the process's range (the data time
  /// only at the end); the message names the first bad time.
  void check(const NoiseProcess& process, const char* where) const;
  /// The (t, alpha, sigma) of every time; checks the grid first.
  std::vector<ProcessPoint> points(
      const NoiseProcess& process, const char* where = "TimeGrid") const;

 private:
  std::vector<double> times_;
};

/// Options every grid constructor takes.
///
/// Example: `GridOptions().t_end(1e-4).to_data(false)`
struct GridOptions {
  /// First time (the prior side). Default: process.t_max().
  TORCH_ARG(std::optional<double>, t_start) = std::nullopt;
  /// Last time before the data. Default: process.t_min().
  TORCH_ARG(std::optional<double>, t_end) = std::nullopt;
  /// Append the data time (a final step to x0). Default: true.
  TORCH_ARG(bool, to_data) = true;
  /// Karras' rho (> 0). Default: 7.
  TORCH_ARG(double, rho) = 7.0;
};

namespace grids {

TimeGrid uniform(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
TimeGrid log_snr(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
TimeGrid karras(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
TimeGrid quadratic(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
/// diffusers' spacings; the process must be a DiscreteProcess with T >=
/// num_steps. t_start / t_end are not used.
TimeGrid linspace(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
TimeGrid leading(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
TimeGrid trailing(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});

/// A grid of the given kind.
TimeGrid make(
    GridKind kind,
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
/// The process's default grid (uniform for the SDEs, Karras for EDM,
/// linspace for a discrete schedule).
TimeGrid default_grid(
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});
/// By name: "uniform", "logsnr", "karras", "quadratic", "linspace",
/// "leading", "trailing", or "default"; an unknown name is an error that
/// lists the valid ones.
TimeGrid from_name(
    const std::string& name,
    const NoiseProcess& process,
    int64_t num_steps,
    const GridOptions& options = {});

/// The grid names from_name knows.
std::vector<std::string> names();
/// Parses a grid name ("default" is not a kind); throws on anything else.
GridKind kind_from_name(const std::string& name);
std::string to_string(GridKind kind);

}  // namespace grids

}  // namespace sbgm
