#include "sbgm/data/toy2d.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <cmath>

namespace sbgm::data {
namespace {

constexpr double kPi = 3.14159265358979323846;

c10::optional<at::Generator> opt(const at::Generator& gen, const char* where) {
  if (!gen.defined()) {
    return c10::nullopt;
  }
  TORCH_CHECK(
      gen.device().is_cpu(),
      where,
      ": the generator must be a CPU generator, got one on ",
      gen.device());
  return gen;
}

void check_args(int64_t n, double noise, const char* where) {
  TORCH_CHECK(n > 0, where, ": n must be positive, got ", n);
  TORCH_CHECK(
      std::isfinite(noise) && noise >= 0,
      where,
      ": noise must be finite and >= 0, got ",
      noise);
}

// Two parts of n / 2 and n - n / 2 points: labels 0 and 1.
torch::Tensor two_part_labels(int64_t n) {
  return torch::cat(
      {torch::zeros({n / 2}, torch::kLong),
       torch::ones({n - n / 2}, torch::kLong)});
}

Labeled2d add_noise_and_shuffle(
    torch::Tensor x,
    const torch::Tensor& labels,
    const c10::optional<at::Generator>& g,
    double noise) {
  if (noise > 0) {
    x = x + noise * torch::randn(x.sizes(), g, torch::dtype(torch::kDouble));
  }
  auto perm = torch::randperm(x.size(0), g, torch::dtype(torch::kLong));
  return {
      x.index_select(0, perm).to(torch::kFloat).contiguous(),
      labels.index_select(0, perm)};
}

}  // namespace

std::string to_string(Toy2d kind) {
  switch (kind) {
    case Toy2d::SwissRoll:
      return "swiss_roll";
    case Toy2d::Moons:
      return "moons";
    case Toy2d::Circles:
      return "circles";
    case Toy2d::EightGaussians:
      return "8gaussians";
  }
  TORCH_CHECK(false, "unknown Toy2d value ", static_cast<int>(kind));
}

std::vector<Toy2d> all_toy2d() {
  return {
      Toy2d::SwissRoll, Toy2d::Moons, Toy2d::Circles, Toy2d::EightGaussians};
}

Toy2d parse_toy2d(const std::string& name) {
  for (Toy2d k : all_toy2d()) {
    if (name == to_string(k)) {
      return k;
    }
  }
  if (name == "swissroll" || name == "swiss-roll") {
    return Toy2d::SwissRoll;
  }
  if (name == "8_gaussians" || name == "eight_gaussians") {
    return Toy2d::EightGaussians;
  }
  TORCH_CHECK(
      false,
      "unknown toy data set \"",
      name,
      "\"; valid names: swiss_roll, moons, circles, 8gaussians");
}

double default_noise(Toy2d kind) {
  switch (kind) {
    case Toy2d::SwissRoll:
      return 0.1;
    case Toy2d::Moons:
    case Toy2d::Circles:
      return 0.05;
    case Toy2d::EightGaussians:
      return 0.1;
  }
  TORCH_CHECK(false, "unknown Toy2d value ", static_cast<int>(kind));
}

torch::Tensor make_swiss_roll(int64_t n, at::Generator gen, double noise) {
  check_args(n, noise, "make_swiss_roll");
  auto g = opt(gen, "make_swiss_roll");
  auto dbl = torch::dtype(torch::kDouble);
  auto t = 1.5 * kPi * (1 + 2 * torch::rand({n}, g, dbl));
  auto x = torch::stack({t * torch::cos(t), t * torch::sin(t)}, 1);
  if (noise > 0) {
    x = x + noise * torch::randn({n, 2}, g, dbl);
  }
  return (x / 10).to(torch::kFloat).contiguous();
}

namespace {

Labeled2d moons(int64_t n, at::Generator gen, double noise) {
  check_args(n, noise, "make_moons");
  auto g = opt(gen, "make_moons");
  auto dbl = torch::dtype(torch::kDouble);
  int64_t n_out = n / 2;
  int64_t n_in = n - n_out;
  auto so = torch::rand({n_out}, g, dbl) * kPi;
  auto si = torch::rand({n_in}, g, dbl) * kPi;
  auto outer = torch::stack({torch::cos(so), torch::sin(so)}, 1);
  auto inner = torch::stack({1 - torch::cos(si), 0.5 - torch::sin(si)}, 1);
  return add_noise_and_shuffle(
      torch::cat({outer, inner}, 0), two_part_labels(n), g, noise);
}

Labeled2d circles(int64_t n, at::Generator gen, double noise, double factor) {
  check_args(n, noise, "make_circles");
  TORCH_CHECK(
      factor > 0 && factor < 1,
      "make_circles: factor must be in (0, 1), got ",
      factor);
  auto g = opt(gen, "make_circles");
  auto dbl = torch::dtype(torch::kDouble);
  int64_t n_out = n / 2;
  int64_t n_in = n - n_out;
  auto ao = torch::rand({n_out}, g, dbl) * (2 * kPi);
  auto ai = torch::rand({n_in}, g, dbl) * (2 * kPi);
  auto outer = torch::stack({torch::cos(ao), torch::sin(ao)}, 1);
  auto inner = factor * torch::stack({torch::cos(ai), torch::sin(ai)}, 1);
  return add_noise_and_shuffle(
      torch::cat({outer, inner}, 0), two_part_labels(n), g, noise);
}

Labeled2d eight_gaussians(int64_t n, at::Generator gen, double noise) {
  check_args(n, noise, "make_eight_gaussians");
  auto g = opt(gen, "make_eight_gaussians");
  auto dbl = torch::dtype(torch::kDouble);
  auto k = torch::randint(0, 8, {n}, g, dbl);
  auto a = k * (2 * kPi / 8);
  auto x = 2 * torch::stack({torch::cos(a), torch::sin(a)}, 1);
  if (noise > 0) {
    x = x + noise * torch::randn({n, 2}, g, dbl);
  }
  return {x.to(torch::kFloat).contiguous(), k.to(torch::kLong)};
}

}  // namespace

torch::Tensor make_moons(int64_t n, at::Generator gen, double noise) {
  return moons(n, std::move(gen), noise).points;
}

torch::Tensor make_circles(
    int64_t n, at::Generator gen, double noise, double factor) {
  return circles(n, std::move(gen), noise, factor).points;
}

torch::Tensor make_eight_gaussians(int64_t n, at::Generator gen, double noise) {
  return eight_gaussians(n, std::move(gen), noise).points;
}

int64_t toy2d_num_classes(Toy2d kind) {
  switch (kind) {
    case Toy2d::Moons:
    case Toy2d::Circles:
      return 2;
    case Toy2d::EightGaussians:
      return 8;
    case Toy2d::SwissRoll:
      return 0;
  }
  return 0;
}

Labeled2d make_toy2d_labeled(
    Toy2d kind, int64_t n, at::Generator gen, std::optional<double> noise) {
  double s = noise.has_value() ? *noise : default_noise(kind);
  switch (kind) {
    case Toy2d::Moons:
      return moons(n, std::move(gen), s);
    case Toy2d::Circles:
      return circles(n, std::move(gen), s, 0.5);
    case Toy2d::EightGaussians:
      return eight_gaussians(n, std::move(gen), s);
    case Toy2d::SwissRoll:
      break;
  }
  TORCH_CHECK(
      false,
      "make_toy2d_labeled: the swiss roll has no classes (moons, circles and "
      "8gaussians have)");
}

torch::Tensor make_toy2d(
    Toy2d kind, int64_t n, at::Generator gen, std::optional<double> noise) {
  double s = noise.has_value() ? *noise : default_noise(kind);
  switch (kind) {
    case Toy2d::SwissRoll:
      return make_swiss_roll(n, gen, s);
    case Toy2d::Moons:
      return make_moons(n, gen, s);
    case Toy2d::Circles:
      return make_circles(n, gen, s);
    case Toy2d::EightGaussians:
      return make_eight_gaussians(n, gen, s);
  }
  TORCH_CHECK(false, "unknown Toy2d value ", static_cast<int>(kind));
}

torch::Tensor make_toy2d(
    const std::string& name,
    int64_t n,
    at::Generator gen,
    std::optional<double> noise) {
  return make_toy2d(parse_toy2d(name), n, gen, noise);
}

Standardizer Standardizer::fit(const torch::Tensor& x) {
  TORCH_CHECK(
      x.defined() && x.dim() == 2 && x.size(0) >= 2 && x.is_floating_point(),
      "Standardizer::fit: x must be a floating tensor [N, D] with N >= 2");
  Standardizer s;
  auto xd = x.to(torch::kDouble);
  auto mean = xd.mean(0, true);
  s.scale = std::sqrt((xd - mean).square().mean().item<double>());
  TORCH_CHECK(
      s.scale > 0 && std::isfinite(s.scale),
      "Standardizer::fit: the points have no spread (scale ",
      s.scale,
      ")");
  s.mean = mean.to(torch::kFloat);
  return s;
}

torch::Tensor Standardizer::apply(const torch::Tensor& x) const {
  if (!mean.defined()) {
    return x;
  }
  return (x - mean.to(x.device(), x.scalar_type())) / scale;
}

torch::Tensor Standardizer::invert(const torch::Tensor& x) const {
  if (!mean.defined()) {
    return x;
  }
  return x * scale + mean.to(x.device(), x.scalar_type());
}

Standardizer toy2d_standardizer(Toy2d kind, std::optional<double> noise) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12345);
  return Standardizer::fit(make_toy2d(kind, 100000, gen, noise));
}

Toy2dSampler::Toy2dSampler(const Toy2dSamplerOptions& options)
    : options_(options),
      gen_(at::make_generator<at::CPUGeneratorImpl>(options.seed())) {
  TORCH_CHECK(
      options_.fixed_size() >= 0,
      "Toy2dSampler: fixed_size must be >= 0, got ",
      options_.fixed_size());
  if (options_.standardize()) {
    standardizer_ = toy2d_standardizer(options_.kind(), options_.noise());
  }
  if (options_.fixed_size() > 0) {
    data_ =
        standardizer_
            .apply(make_toy2d(
                options_.kind(), options_.fixed_size(), gen_, options_.noise()))
            .to(options_.device());
  }
}

torch::Tensor Toy2dSampler::sample(int64_t batch_size) {
  TORCH_CHECK(
      batch_size > 0,
      "Toy2dSampler::sample: batch_size must be positive, got ",
      batch_size);
  if (!data_.defined()) {
    return standardizer_
        .apply(make_toy2d(options_.kind(), batch_size, gen_, options_.noise()))
        .to(options_.device());
  }
  auto idx = torch::randint(
      0, data_.size(0), {batch_size}, gen_, torch::dtype(torch::kLong));
  return data_.index_select(0, idx.to(data_.device()));
}

}  // namespace sbgm::data
