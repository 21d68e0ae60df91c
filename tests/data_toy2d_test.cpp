// Toy 2-D sets: shapes, closed-form geometry without noise, seeding, errors.

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "sbgm/data/toy2d.h"
#include "sbgm/random.h"
#include "support.h"

using namespace sbgm::data;

namespace {

constexpr double kPi = 3.14159265358979323846;

at::Generator gen(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

torch::Tensor radius(const torch::Tensor& x, double cx = 0, double cy = 0) {
  auto d = x.to(torch::kDouble);
  return torch::hypot(d.select(1, 0) - cx, d.select(1, 1) - cy);
}

TEST(Toy2dTest, NamesRoundTripAndBadNamesError) {
  for (Toy2d k : all_toy2d()) {
    EXPECT_EQ(parse_toy2d(to_string(k)), k);
  }
  EXPECT_EQ(parse_toy2d("swissroll"), Toy2d::SwissRoll);
  EXPECT_EQ(parse_toy2d("eight_gaussians"), Toy2d::EightGaussians);
  EXPECT_THROW_MSG(parse_toy2d("spiral"), "unknown toy data set \"spiral\"");
  EXPECT_THROW_MSG(
      parse_toy2d(""), "valid names: swiss_roll, moons, circles, 8gaussians");
  EXPECT_THROW_MSG(make_toy2d("mooons", 10), "mooons");
}

TEST(Toy2dTest, ShapesDtypeAndSeeding) {
  for (Toy2d k : all_toy2d()) {
    for (int64_t n : {1, 7, 1000}) {
      auto x = make_toy2d(k, n, gen(3));
      ASSERT_EQ(x.sizes(), (std::vector<int64_t>{n, 2})) << to_string(k);
      EXPECT_EQ(x.scalar_type(), torch::kFloat);
      EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
    }
    auto a = make_toy2d(k, 500, gen(11));
    auto b = make_toy2d(k, 500, gen(11));
    auto c = make_toy2d(k, 500, gen(12));
    EXPECT_TRUE(torch::equal(a, b)) << to_string(k);
    EXPECT_FALSE(torch::equal(a, c)) << to_string(k);
    // The global generator is used without one, and reseeding repeats it.
    torch::manual_seed(5);
    auto d = make_toy2d(k, 50);
    torch::manual_seed(5);
    EXPECT_TRUE(torch::equal(d, make_toy2d(k, 50))) << to_string(k);
  }
}

TEST(Toy2dTest, SwissRollRadiusIsTOver10) {
  // Without noise the point is (t cos t, t sin t) / 10: radius t / 10, and
  // the angle atan2(z, x) equals t modulo 2 pi.
  auto x = make_swiss_roll(2000, gen(0), 0.0).to(torch::kDouble);
  auto r = radius(x);
  auto t = 10 * r;
  EXPECT_GE(t.min().item<double>(), 1.5 * kPi - 1e-5);
  EXPECT_LE(t.max().item<double>(), 4.5 * kPi + 1e-5);
  auto ang = torch::atan2(x.select(1, 1), x.select(1, 0));
  auto diff = torch::remainder(ang - t + kPi, 2 * kPi) - kPi;
  EXPECT_LT(diff.abs().max().item<double>(), 1e-5);
  // t = 1.5 pi (1 + 2u) is uniform on [1.5 pi, 4.5 pi]: mean 3 pi,
  // sd 3 pi / sqrt(12); check mean and sd within 5 standard errors.
  double sd = 3 * kPi / std::sqrt(12.0);
  // The sample sd of a uniform has standard error sd * sqrt(0.2 / n).
  EXPECT_NEAR(t.std().item<double>(), sd, 5 * sd * std::sqrt(0.2 / 2000.0));
  EXPECT_NEAR(t.mean().item<double>(), 3 * kPi, 5 * sd / std::sqrt(2000.0));
  // Noise 0.1 before the division: residual sd 0.01 per coordinate.
  auto g = gen(0);
  auto noisy = make_swiss_roll(20000, g, 0.1).to(torch::kDouble);
  EXPECT_LE(noisy.abs().max().item<double>(), 4.5 * kPi / 10 + 0.06);
}

TEST(Toy2dTest, MoonsLieOnTheirCircles) {
  auto x = make_moons(1001, gen(0), 0.0).to(torch::kDouble);
  auto r_outer = radius(x, 0, 0);
  auto r_inner = radius(x, 1, 0.5);
  auto on_outer = (r_outer - 1).abs() < 1e-6;
  auto on_inner = (r_inner - 1).abs() < 1e-6;
  EXPECT_TRUE((on_outer | on_inner).all().item<bool>());
  EXPECT_EQ(on_outer.sum().item<int64_t>(), 500);  // n / 2 outer
  EXPECT_EQ(on_inner.sum().item<int64_t>(), 501);
  // Outer moon in the upper half plane, inner in y <= 0.5.
  auto outer = x.index({on_outer});
  auto inner = x.index({on_inner});
  EXPECT_GE(outer.select(1, 1).min().item<double>(), -1e-6);
  EXPECT_LE(inner.select(1, 1).max().item<double>(), 0.5 + 1e-6);
  // Centres of mass of uniform half circles: (0, 2/pi) for the outer one
  // (the mean of cos and sin over [0, pi]), (1, 0.5 - 2/pi) inner; within
  // 4 standard errors (the coordinates' std is at most 0.71).
  const double se = 4 * 0.71 / std::sqrt(500.0);
  EXPECT_NEAR(outer.select(1, 0).mean().item<double>(), 0, se);
  EXPECT_NEAR(outer.select(1, 1).mean().item<double>(), 2 / kPi, se);
  EXPECT_NEAR(inner.select(1, 0).mean().item<double>(), 1, se);
  EXPECT_NEAR(inner.select(1, 1).mean().item<double>(), 0.5 - 2 / kPi, se);
  // Random angles: two draws are different sets, not one set re-noised.
  auto y = make_moons(1001, gen(1), 0.0).to(torch::kDouble);
  EXPECT_GT(
      (std::get<0>(x.sort(0)) - std::get<0>(y.sort(0)))
          .abs()
          .max()
          .item<double>(),
      1e-3);
  // Shuffled: outer and inner points are not in two blocks.
  EXPECT_FALSE(on_outer.slice(0, 0, 500).all().item<bool>());
}

TEST(Toy2dTest, CirclesHaveRadiiOneAndFactor) {
  auto x = make_circles(999, gen(1), 0.0, 0.3);
  auto r = radius(x);
  auto outer = (r - 1).abs() < 1e-6;
  auto inner = (r - 0.3).abs() < 1e-6;
  EXPECT_TRUE((outer | inner).all().item<bool>());
  EXPECT_EQ(outer.sum().item<int64_t>(), 499);
  EXPECT_EQ(inner.sum().item<int64_t>(), 500);
  // Uniform angles: each circle's mean is 0 within 4 standard errors.
  auto xd = x.to(torch::kDouble);
  EXPECT_LT(
      xd.index({outer}).mean(0).abs().max().item<double>(),
      4 * std::sqrt(0.5 / 499));
  EXPECT_THROW_MSG(make_circles(10, {}, 0.0, 1.0), "factor must be in (0, 1)");
}

TEST(Toy2dTest, EightGaussiansAroundTheirMeans) {
  auto x = make_eight_gaussians(8000, gen(2), 0.0);
  auto r = radius(x);
  EXPECT_LT((r - 2).abs().max().item<double>(), 1e-5);
  auto ang = torch::atan2(x.select(1, 1), x.select(1, 0)).to(torch::kDouble);
  auto k = torch::round(ang / (kPi / 4));
  EXPECT_LT((ang - k * (kPi / 4)).abs().max().item<double>(), 1e-5);
  // Every component is used, each about 1/8 of the time.
  auto counts = torch::bincount(torch::remainder(k, 8).to(torch::kLong));
  ASSERT_EQ(counts.size(0), 8);
  EXPECT_GT(counts.min().item<int64_t>(), 800);
  // With noise: the per-coordinate spread around the nearest mean is `noise`.
  auto y = make_eight_gaussians(20000, gen(3), 0.1).to(torch::kDouble);
  auto a =
      torch::round(torch::atan2(y.select(1, 1), y.select(1, 0)) / (kPi / 4)) *
      (kPi / 4);
  auto res = y - 2 * torch::stack({torch::cos(a), torch::sin(a)}, 1);
  EXPECT_NEAR(res.std().item<double>(), 0.1, 0.005);
}

TEST(Toy2dTest, StandardizerGivesUnitVarianceAndInverts) {
  for (auto kind : all_toy2d()) {
    auto s = toy2d_standardizer(kind);
    auto x = make_toy2d(kind, 50000, gen(9)).to(torch::kDouble);
    auto y = s.apply(x);
    EXPECT_LT(y.mean(0).abs().max().item<double>(), 0.02) << to_string(kind);
    EXPECT_NEAR(y.square().mean().item<double>(), 1.0, 0.02) << to_string(kind);
    EXPECT_TRUE(sbgm::test::all_close(s.invert(y), x, 1e-6, 1e-6));
    // One scale for both coordinates: the aspect is kept.
    auto ratio = (y / (x - s.mean.to(torch::kDouble)));
    EXPECT_NEAR(ratio.median().item<double>(), 1.0 / s.scale, 1e-6);
  }
  Toy2dSampler sampler(Toy2dSamplerOptions(Toy2d::Circles).standardize(true));
  auto b = sampler.sample(20000).to(torch::kDouble);
  EXPECT_NEAR(b.square().mean().item<double>(), 1.0, 0.03);
  EXPECT_THROW_MSG(
      Standardizer::fit(torch::ones({5, 2})), "the points have no spread");
}

TEST(Toy2dTest, BadArguments) {
  EXPECT_THROW_MSG(make_toy2d(Toy2d::Moons, 0), "n must be positive, got 0");
  EXPECT_THROW_MSG(make_toy2d("circles", -3), "got -3");
  EXPECT_THROW_MSG(
      make_swiss_roll(10, {}, -0.1), "noise must be finite and >= 0");
  EXPECT_THROW_MSG(make_moons(10, {}, NAN), "noise must be finite");
  EXPECT_THROW_MSG(
      Toy2dSampler(Toy2dSamplerOptions(Toy2d::Moons).fixed_size(-1)),
      "fixed_size must be >= 0");
  Toy2dSampler s(Toy2dSamplerOptions(Toy2d::Moons));
  EXPECT_THROW_MSG(s.sample(0), "batch_size must be positive");
}

TEST(Toy2dTest, SamplerFreshAndFixed) {
  Toy2dSampler fresh(Toy2dSamplerOptions(Toy2d::SwissRoll).seed(4));
  Toy2dSampler fresh2(Toy2dSamplerOptions(Toy2d::SwissRoll).seed(4));
  auto a = fresh.sample(64);
  auto b = fresh.sample(64);
  EXPECT_FALSE(fresh.data().defined());
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{64, 2}));
  EXPECT_FALSE(torch::equal(a, b));
  EXPECT_TRUE(torch::equal(a, fresh2.sample(64)));

  Toy2dSampler fixed(
      Toy2dSamplerOptions(Toy2d::Circles).fixed_size(100).noise(0.0));
  ASSERT_EQ(fixed.data().sizes(), (std::vector<int64_t>{100, 2}));
  auto batch = fixed.sample(500);
  // Every sampled point is one of the fixed set's points.
  auto d =
      torch::cdist(batch.to(torch::kDouble), fixed.data().to(torch::kDouble));
  EXPECT_LT(std::get<0>(d.min(1)).max().item<double>(), 1e-12);
}

}  // namespace

TEST(Toy2dLabeled, PartsAreClassesOfTheSamePoints) {
  using sbgm::data::Toy2d;
  const int64_t n = 4001;
  for (auto kind : {Toy2d::Moons, Toy2d::Circles, Toy2d::EightGaussians}) {
    auto lab = sbgm::data::make_toy2d_labeled(kind, n, sbgm::make_generator(3));
    EXPECT_TRUE(torch::equal(
        lab.points, sbgm::data::make_toy2d(kind, n, sbgm::make_generator(3))));
    ASSERT_EQ(lab.labels.sizes(), torch::IntArrayRef({n}));
    EXPECT_EQ(lab.labels.scalar_type(), torch::kLong);
    const int64_t k = sbgm::data::toy2d_num_classes(kind);
    EXPECT_EQ(lab.labels.min().item<int64_t>(), 0);
    EXPECT_EQ(lab.labels.max().item<int64_t>(), k - 1);
    auto p = lab.points.to(torch::kDouble);
    auto is = [&](int64_t c) { return lab.labels == c; };
    if (kind == Toy2d::Moons) {  // upper half: y = sin s >= 0, up to noise
      EXPECT_EQ(is(0).sum().item<int64_t>(), n / 2);
      EXPECT_GT(p.index({is(0), 1}).mean().item<double>(), 0.5);
      EXPECT_LT(p.index({is(1), 1}).mean().item<double>(), 0.0);
    } else if (kind == Toy2d::Circles) {  // outer radius 1, inner 0.5
      auto r = p.norm(2, 1);
      EXPECT_NEAR(r.index({is(0)}).mean().item<double>(), 1.0, 0.01);
      EXPECT_NEAR(r.index({is(1)}).mean().item<double>(), 0.5, 0.01);
    } else {  // each point near its mode 2 (cos, sin)(2 pi k / 8)
      auto a = lab.labels.to(torch::kDouble) * (2 * M_PI / 8);
      auto mode = 2 * torch::stack({a.cos(), a.sin()}, 1);
      EXPECT_LT((p - mode).norm(2, 1).max().item<double>(), 0.6);
    }
  }
  EXPECT_EQ(sbgm::data::toy2d_num_classes(Toy2d::SwissRoll), 0);
  EXPECT_THROW_MSG(
      sbgm::data::make_toy2d_labeled(Toy2d::SwissRoll, 10),
      "the swiss roll has no classes");
}
