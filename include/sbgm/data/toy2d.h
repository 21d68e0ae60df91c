#pragma once

/// \file
/// Two-dimensional toy data sets (float32 [N, 2] on the CPU), shaped after
/// scikit-learn's sample generators. A `torch::Generator` (CPU) makes them
/// reproducible; an undefined one uses torch's global generator.

#include <ATen/core/Generator.h>
#include <torch/arg.h>
#include <torch/types.h>

#include <optional>
#include <string>
#include <vector>

namespace sbgm::data {

/// The toy sets.
enum class Toy2d { SwissRoll, Moons, Circles, EightGaussians };

/// Name of a set: "swiss_roll", "moons", "circles", "8gaussians".
std::string to_string(Toy2d kind);

/// Parses a name given by to_string (also accepts "swissroll", "swiss-roll",
/// "8_gaussians", "eight_gaussians"); errors with the list of valid names.
Toy2d parse_toy2d(const std::string& name);

/// All sets, in enum order.
std::vector<Toy2d> all_toy2d();

/// The noise a set gets when none is given: swiss_roll 0.1 (added before the
/// division by 10), moons 0.05, circles 0.05, 8gaussians 0.1.
double default_noise(Toy2d kind);

/// Swiss roll as sklearn.datasets.make_swiss_roll, 2-D and scaled:
/// t = 1.5 pi (1 + 2u), u ~ U(0, 1); (x, z) = (t cos t, t sin t) + noise * eps,
/// eps ~ N(0, I); returns (x, z) / 10, so without noise
/// sqrt(x^2 + z^2) = t / 10 in [0.471, 1.414].
torch::Tensor make_swiss_roll(
    int64_t n, at::Generator gen = {}, double noise = 0.1);

/// Two interleaving half circles as sklearn.datasets.make_moons (shuffled):
/// n / 2 points (cos s, sin s) and n - n / 2 points (1 - cos s, 0.5 - sin s),
/// s ~ U(0, pi), plus N(0, noise^2) per coordinate. (sklearn spaces s
/// evenly; then every draw of the same size is the same set up to the
/// noise, which hides the spread of the set from any two-sample distance,
/// and a training batch repeats the same angles.)
torch::Tensor make_moons(
    int64_t n, at::Generator gen = {}, double noise = 0.05);

/// Two concentric circles as sklearn.datasets.make_circles (shuffled):
/// n / 2 points on the unit circle and n - n / 2 on radius `factor` in (0, 1),
/// angles ~ U(0, 2 pi) (random, unlike sklearn's evenly spaced ones; see
/// make_moons), plus N(0, noise^2) per coordinate.
torch::Tensor make_circles(
    int64_t n,
    at::Generator gen = {},
    double noise = 0.05,
    double factor = 0.5);

/// A mixture of 8 Gaussians with means 2 (cos(2 pi k / 8), sin(2 pi k / 8)),
/// k uniform in 0..7, standard deviation `noise`.
torch::Tensor make_eight_gaussians(
    int64_t n, at::Generator gen = {}, double noise = 0.1);

/// n points of the named set; `noise` defaults to default_noise(kind).
///
/// Example: `auto x = sbgm::data::make_toy2d("swiss_roll", 10000, gen);`
torch::Tensor make_toy2d(
    Toy2d kind,
    int64_t n,
    at::Generator gen = {},
    std::optional<double> noise = std::nullopt);
torch::Tensor make_toy2d(
    const std::string& name,
    int64_t n,
    at::Generator gen = {},
    std::optional<double> noise = std::nullopt);

/// Points of a set made of parts, with the part of each point as its class.
struct Labeled2d {
  torch::Tensor points;  // [n, 2] float32
  torch::Tensor labels;  // [n] int64
};

/// The number of classes of make_toy2d_labeled: 2 for moons (0: the upper
/// half, 1: the lower) and circles (0: outer, 1: inner), 8 for 8gaussians
/// (k: the mode at angle 2 pi k / 8), 0 for the swiss roll (none).
int64_t toy2d_num_classes(Toy2d kind);

/// The points of make_toy2d (the same ones for the same generator) with
/// their classes; throws for the swiss roll, which has none.
Labeled2d make_toy2d_labeled(
    Toy2d kind,
    int64_t n,
    at::Generator gen = {},
    std::optional<double> noise = std::nullopt);

/// An affine map to zero mean and unit variance with one scale for all
/// coordinates (so shapes keep their aspect): x' = (x - mean) / scale with
/// scale^2 the mean over coordinates of the variance. Diffusion processes
/// start from N(0, I): data of unit variance meets the prior on its own
/// scale (the role of EDM's sigma_data).
struct Standardizer {
  /// Mean [1, D] (float32); undefined: the identity map.
  torch::Tensor mean;
  double scale = 1.0;
  /// Fits the map to points x [N, D].
  static Standardizer fit(const torch::Tensor& x);
  /// (x - mean) / scale, on x's device and dtype.
  torch::Tensor apply(const torch::Tensor& x) const;
  /// x * scale + mean.
  torch::Tensor invert(const torch::Tensor& x) const;
};

/// The standardizer of a toy set: fitted once to 10^5 of its points drawn
/// with a fixed seed, so every program gets the same map for the same set.
Standardizer toy2d_standardizer(
    Toy2d kind, std::optional<double> noise = std::nullopt);

/// Options of a Toy2dSampler.
///
/// Example: `Toy2dSampler
/// s(Toy2dSamplerOptions(Toy2d::Moons).fixed_size(8000));`
struct Toy2dSamplerOptions {
  explicit Toy2dSamplerOptions(Toy2d kind) : kind_(kind) {}
  /// The set to draw from.
  TORCH_ARG(Toy2d, kind);
  /// 0 draws fresh points for every batch; n > 0 makes a fixed set of n points
  /// once and samples batches from it uniformly with replacement. Default: 0.
  TORCH_ARG(int64_t, fixed_size) = 0;
  /// Noise; unset means default_noise(kind). Default: unset.
  TORCH_ARG(std::optional<double>, noise) = std::nullopt;
  /// Seed of the sampler's own generator. Default: 0.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Device the batches are put on. Default: CPU.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Standardize the batches with toy2d_standardizer(kind). Default: false.
  TORCH_ARG(bool, standardize) = false;
};

/// Batches of toy points, fresh or from a fixed set, with its own generator
/// (so the same seed gives the same sequence of batches).
class Toy2dSampler {
 public:
  explicit Toy2dSampler(const Toy2dSamplerOptions& options);
  /// A float32 [batch_size, 2] batch on options.device().
  torch::Tensor sample(int64_t batch_size);
  /// The fixed set (on options.device()), or an undefined tensor in fresh mode.
  const torch::Tensor& data() const {
    return data_;
  }
  const Toy2dSamplerOptions& options() const {
    return options_;
  }
  /// The sampler's own generator (a handle): give it to
  /// Trainer::add_generator so that checkpoints hold its state.
  const at::Generator& generator() const {
    return gen_;
  }
  /// The map applied to the batches (the identity without standardize).
  const Standardizer& standardizer() const {
    return standardizer_;
  }

 private:
  Toy2dSamplerOptions options_;
  at::Generator gen_;
  torch::Tensor data_;
  Standardizer standardizer_;
};

}  // namespace sbgm::data
