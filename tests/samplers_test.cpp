// Every sampler on exact scores: Gaussian mixtures with unequal weights whose
// perturbed marginals under any noise process are again mixtures with a
// closed-form score, so the right answer is known without training.

#include "sbgm/samplers/samplers.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "mixture_check.h"
#include "sbgm/gmm.h"
#include "sbgm/metrics/distances.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/random.h"
#include "sbgm/samplers/likelihood.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace ss = sbgm::samplers;
using sbgm::GaussianMixture;
using sbgm::NoiseProcess;
using sbgm::Prediction;
using sbgm::TimeGrid;
using sbgm::test::check_samples;

namespace {

constexpr int64_t kN = 2000;  // samples per check

GaussianMixture mixture() {
  return GaussianMixture(
      torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
      torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
      torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
}

// Three anisotropic components in 8-D with unequal weights.
GaussianMixture mixture8() {
  auto base = torch::linspace(-1.0, 1.0, 8, torch::kDouble);
  auto means = torch::stack({base * 2.0, -base * 2.0, base.flip(0) + 1.0});
  auto stds = torch::stack(
      {torch::linspace(0.3, 0.6, 8, torch::kDouble),
       torch::linspace(0.5, 0.25, 8, torch::kDouble),
       torch::full({8}, 0.4, torch::kDouble)});
  return GaussianMixture(
      torch::tensor({0.25, 0.6, 0.15}, torch::kDouble), means, stds);
}

/// The data mixture perturbed by x = a x0 + s z.
GaussianMixture perturbed(const GaussianMixture& g, double a, double s) {
  return GaussianMixture(
      g.weights(), g.means() * a, (g.stds() * a).square().add(s * s).sqrt());
}

torch::Generator gen(uint64_t seed) {
  return sbgm::make_generator(seed);
}

ss::CommonOptions common(uint64_t seed) {
  return ss::CommonOptions().generator(gen(seed)).dtype(torch::kDouble);
}

std::shared_ptr<NoiseProcess> make_process(const std::string& name) {
  // Each process by its registry config; a discrete cosine schedule whose
  // exact model reads fractional steps.
  if (name == "discrete") {
    return sbgm::process_from_config(
        {{"name", "discrete"},
         {"schedule", {{"kind", "cosine"}, {"num_timesteps", 1000}}},
         {"quantize", false}});
  }
  return sbgm::process_from_config({{"name", name}});
}

// The grids each process is tested on.
std::vector<std::string> grids_for(const std::string& process) {
  if (process == "discrete") {
    return {"linspace", "trailing", "karras"};
  }
  if (process == "edm") {
    return {"karras", "logsnr"};
  }
  return {"uniform", "logsnr", "karras"};
}

struct Run {
  std::string sampler;
  int64_t steps;
  int64_t nfe;  // expected
  double bias;
};

// Each sampler with a step count that its order needs.
std::vector<Run> runs() {
  return {
      {"ddpm", 500, 500, 0.02},
      {"ddim", 100, 100, 0.02},
      {"em", 500, 500, 0.03},
      {"pc", 250, 500, 0.03},
      {"ode", 60, 2 * 59 + 1, 0.02},
      {"dopri5", 2, -1, 0.02},
      {"euler_ancestral", 200, 200, 0.03},
      {"heun", 30, 2 * 29 + 1, 0.02},
      {"dpmpp_2m", 50, 50, 0.02},
      {"dpmpp_3m", 50, 50, 0.02},
      {"dpmpp_2m_sde", 200, 200, 0.03},
      {"unipc", 50, 50, 0.02},
  };
}

// Samplers whose map from the starting noise is deterministic.
bool deterministic(const std::string& sampler) {
  return sampler == "ode" || sampler == "dopri5" || sampler == "ddim" ||
         sampler == "heun" || sampler == "dpmpp_2m" || sampler == "dpmpp_3m" ||
         sampler == "unipc";
}

// The few-step solvers run on the grids they are made for: log-SNR and
// Karras (and a discrete schedule's trailing spacing for DPM-Solver++);
// Heun's trapezoid also needs steps small next to sigma / alpha, so on the
// cosine schedule (sigma / alpha = 1e4 at its last step) its Karras grid
// starts at 80, as EDM's does. Empty: not run on this grid.
std::optional<TimeGrid> grid_for(
    const NoiseProcess& process,
    const std::string& grid,
    const std::string& sampler,
    int64_t steps) {
  const bool solver =
      sampler == "heun" || sampler.rfind("dpmpp", 0) == 0 || sampler == "unipc";
  if (solver && grid != "logsnr" && grid != "karras" &&
      !(grid == "trailing" && sampler != "heun")) {
    return std::nullopt;
  }
  sbgm::GridOptions o;
  if (sampler == "heun" && process.name() == "discrete") {
    if (grid != "karras") {
      return std::nullopt;
    }
    o.t_start(process.t_of_lambda(-std::log(80.0)));
  }
  return sbgm::grids::from_name(grid, process, steps, o);
}

// ---- every sampler x process x grid -----------------------------------------

class EverySampler : public ::testing::TestWithParam<std::string> {};

TEST_P(EverySampler, TwoDimensionalMixtureOnSeveralGrids) {
  const auto process = make_process(GetParam());
  static const auto g = mixture();  // one target: its MMD floor is shared
  uint64_t seed = 100;
  for (const auto& grid : grids_for(GetParam())) {
    for (const auto& r : runs()) {
      // Dopri5 integrates between the grid's times: a spacing's coarse grid
      // would end far from the data (trailing(2) ends at step 499).
      const bool spacing = grid == "trailing" || grid == "linspace";
      const int64_t steps = r.sampler == "dopri5" && spacing ? 50 : r.steps;
      const auto time_grid = grid_for(*process, grid, r.sampler, steps);
      if (!time_grid) {
        continue;
      }
      SCOPED_TRACE(process->describe() + ", grid " + grid + ", " + r.sampler);
      // An eps model through the conversion for the ancestral samplers, the
      // score for the SDE ones, x0 and v for the ODE.
      const Prediction p =
          r.sampler == "ddpm" || r.sampler == "dpmpp_2m"   ? Prediction::Epsilon
          : r.sampler == "ddim" || r.sampler == "dpmpp_3m" ? Prediction::V
          : r.sampler == "ode" || r.sampler == "heun" || r.sampler == "unipc"
              ? Prediction::X0
              : Prediction::Score;
      auto model = g.model(process, p);
      auto opts = ss::SampleOptions()
                      .sampler(r.sampler)
                      .time_grid(*time_grid)
                      .common(common(++seed));
      if (deterministic(r.sampler)) {
        // DDIM (eta = 0) and the ODE are deterministic maps: start them from
        // the exact marginal at the grid's start (a prior that ignores the
        // data's spread, as VE's N(0, sigma_1^2) does, would be carried to
        // the end).
        const auto p0 = process->at(time_grid->front());
        opts.common().x_init(perturbed(g, p0.alpha, p0.sigma)
                                 .sample(kN, gen(++seed), torch::kDouble));
      }
      auto res = ss::sample(model, *process, {kN, 2}, opts);
      if (r.nfe > 0) {
        EXPECT_EQ(res.nfe, r.nfe);
      }
      check_samples(res.samples, g, r.bias);
    }
  }
}

TEST_P(EverySampler, EightDimensionalMixture) {
  const auto process = make_process(GetParam());
  static const auto g = mixture8();
  uint64_t seed = 500;
  for (const auto& r : runs()) {
    if (r.sampler == "pc" || r.sampler == "dopri5" || r.sampler == "ode" ||
        r.sampler == "dpmpp_3m" || r.sampler == "euler_ancestral") {
      continue;  // covered in 2-D; the same code paths
    }
    SCOPED_TRACE(process->describe() + ", " + r.sampler);
    const bool solver = r.sampler == "heun" ||
                        r.sampler.rfind("dpmpp", 0) == 0 ||
                        r.sampler == "unipc";
    const auto time_grid =
        solver ? *grid_for(*process, "karras", r.sampler, r.steps)
               : sbgm::grids::default_grid(*process, r.steps);
    auto opts =
        ss::SampleOptions().sampler(r.sampler).time_grid(time_grid).common(
            common(++seed));
    if (deterministic(r.sampler)) {
      const auto p0 = process->at(time_grid.front());
      opts.common().x_init(perturbed(g, p0.alpha, p0.sigma)
                               .sample(kN, gen(++seed), torch::kDouble));
    }
    auto res = ss::sample(
        g.model(process, Prediction::Epsilon), *process, {kN, 8}, opts);
    check_samples(res.samples, g, 0.04);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Processes,
    EverySampler,
    ::testing::Values("vp", "ve", "ve_geometric", "edm", "discrete"),
    [](const auto& info) { return info.param; });

// ---- final steps
// --------------------------------------------------------------

// A point mass at mu (a Gaussian of sd 1e-6): the exact x0 is mu whatever
// the state, so every sampler on every grid constructor must return mu
// with no residual noise (the last evaluation time has sigma from 0.002
// (EDM) to 0.045 (VP): a leftover sigma z would show at once), however
// coarse the grid; it must visit the grid's times in order without repeats
// and end at the grid's end.
TEST(FinalSteps, EverySamplerEveryGridLandsOnTheDataWithoutNoise) {
  const double sd = 1e-6;
  GaussianMixture point(
      torch::ones({1}, torch::kDouble),
      torch::tensor({{0.7, -1.3}}, torch::kDouble),
      torch::full({1}, sd, torch::kDouble));
  std::vector<std::shared_ptr<NoiseProcess>> processes = {
      std::make_shared<sbgm::VPSDE>(),
      std::make_shared<sbgm::GeometricVESDE>(),
      std::make_shared<sbgm::EDMProcess>(),
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::cosine(200))};
  uint64_t seed = 900;
  for (const auto& process : processes) {
    auto model = point.model(process, Prediction::Epsilon);
    for (const auto& grid_name : sbgm::grids::names()) {
      const bool spacing = grid_name == "linspace" || grid_name == "leading" ||
                           grid_name == "trailing";
      if (spacing && process->name() != "discrete") {
        continue;
      }
      const auto grid = sbgm::grids::from_name(grid_name, *process, 12);
      for (const auto& sampler : ss::sampler_names()) {
        if (sampler == "default" || sampler == "em") {
          continue;  // aliases
        }
        SCOPED_TRACE(process->describe() + " " + grid_name + " " + sampler);
        std::vector<double> times;
        auto opts = ss::SampleOptions().sampler(sampler).time_grid(grid).common(
            common(++seed).callback(
                [&](const ss::StepInfo& s) { times.push_back(s.time); }));
        auto r = ss::sample(model, *process, {500, 2}, opts);
        // The times visited: the grid after its start, in order.
        ASSERT_EQ(times.size(), grid.times().size() - 1);
        for (size_t i = 0; i < times.size(); ++i) {
          EXPECT_EQ(times[i], grid.times()[i + 1]);
        }
        EXPECT_EQ(times.back(), process->data_time());
        // No residual noise: every sample is mu. (Whatever a coarse grid
        // gets wrong before the last step, the model's x0 there is mu up to
        // sd^2 / sigma^2 < 1e-6 of the state's offset.)
        const double err =
            (r.samples - point.means()[0]).abs().max().item<double>();
        EXPECT_LT(err, 1e-4);
      }
    }
  }
}

// ---- the readable updates and the folded tables
// -------------------------------

TEST(Updates, DDPMStepIsHoEtAlBetweenConsecutiveSteps) {
  // Between steps t and t-1 of a schedule, update::ddpm with x0 from an eps
  // model is (x - beta / sqrt(1 - abar) eps) / sqrt(alpha) + sigma z, with
  // sigma^2 = beta (Beta) or beta~ (Posterior); computed here from the
  // schedule's tables.
  auto sch = sbgm::Schedule::linear(50);
  sbgm::DiscreteProcess p(sch);
  auto x = torch::randn({16, 2}, torch::kDouble);
  auto eps = torch::randn({16, 2}, torch::kDouble);
  auto z = torch::randn({16, 2}, torch::kDouble);
  for (int64_t t : {1, 7, 49}) {
    const auto from = p.at(t), to = p.at(t - 1);
    auto d = ss::update::denoised(x, eps, Prediction::Epsilon, from);
    const double beta = sch.beta(t), ab = sch.alpha_bar(t);
    auto mean = (x - beta / std::sqrt(1 - ab) * eps) / std::sqrt(1 - beta);
    for (auto v : {ss::DDPMVariance::Beta, ss::DDPMVariance::Posterior}) {
      const double var = v == ss::DDPMVariance::Beta
                             ? beta
                             : beta * (1 - sch.alpha_bar(t - 1)) / (1 - ab);
      auto got = ss::update::ddpm(x, d.x0, z, from, to, v);
      EXPECT_TRUE(
          sbgm::test::all_close(got, mean + std::sqrt(var) * z, 1e-10, 1e-12))
          << "t = " << t;
    }
  }
  // Into the data from step 0: x0, no noise.
  const auto from = p.at(0.0), to = p.at(-1.0);
  auto d = ss::update::denoised(x, eps, Prediction::Epsilon, from);
  auto got = ss::update::ddpm(x, d.x0, z, from, to, ss::DDPMVariance::Beta);
  EXPECT_TRUE(sbgm::test::all_close(got, d.x0, 1e-12, 1e-12));
}

TEST(Updates, DDIMIsEquation12) {
  // Song et al. eq. 12 with alpha = alpha_bar, written out op by op.
  sbgm::DiscreteProcess p(sbgm::Schedule::cosine(100));
  auto x = torch::randn({8, 3}, torch::kDouble);
  auto eps = torch::randn({8, 3}, torch::kDouble);
  auto z = torch::randn({8, 3}, torch::kDouble);
  for (double eta : {0.0, 0.5, 1.0}) {
    const double at = std::pow(p.alpha(60.0), 2),
                 ap = std::pow(p.alpha(20.0), 2);
    auto x0 = (x - std::sqrt(1 - at) * eps) / std::sqrt(at);
    const double sig =
        eta * std::sqrt((1 - ap) / (1 - at)) * std::sqrt(1 - at / ap);
    auto want =
        std::sqrt(ap) * x0 + std::sqrt(1 - ap - sig * sig) * eps + sig * z;
    auto got = ss::update::ddim(x0, eps, z, p.at(60.0), p.at(20.0), eta);
    EXPECT_TRUE(sbgm::test::all_close(got, want, 1e-10, 1e-12)) << eta;
  }
}

// The fast path (coefficients folded from the update functions) against the
// readable functions applied with tensors, for every prediction, with and
// without clipping.
TEST(Updates, FoldedStepsMatchTheReadableFunctions) {
  auto process = std::make_shared<sbgm::DiscreteProcess>(
      sbgm::Schedule::linear(30),
      sbgm::DiscreteProcessOptions().quantize(false));
  auto g = mixture();
  const auto grid = sbgm::grids::trailing(*process, 6);
  const auto pts = grid.points(*process);
  for (auto p :
       {Prediction::Epsilon,
        Prediction::Score,
        Prediction::X0,
        Prediction::V}) {
    auto model = g.model(process, p);
    for (bool clip : {false, true}) {
      for (double eta : {0.0, 1.0}) {
        SCOPED_TRACE(
            sbgm::to_string(p) + (clip ? " clip" : "") + " eta " +
            std::to_string(eta));
        auto x_init = torch::randn({64, 2}, torch::kDouble) * 1.2;
        auto fast = ss::ddim(
            model,
            *process,
            {64, 2},
            ss::DDIMOptions()
                .grid(grid)
                .eta(eta)
                .clip_x0(clip)
                .clip_range(1.5)
                .common(common(7).x_init(x_init)));
        // The readable loop, with the same noise draws.
        auto gen7 = gen(7);
        auto x = x_init.clone();
        for (size_t i = 0; i + 1 < pts.size(); ++i) {
          auto t = torch::full({64}, pts[i].t, torch::kDouble);
          auto d = ss::update::denoised(x, model(x, t), p, pts[i]);
          if (clip) {
            auto x0c = d.x0.clamp(-1.5, 1.5);
            d = ss::update::denoised(x, x0c, Prediction::X0, pts[i]);
          }
          torch::Tensor z;
          if (eta > 0 && !pts[i + 1].is_data()) {
            z = torch::empty_like(x).normal_(0.0, 1.0, gen7);
          }
          x = ss::update::ddim(d.x0, d.eps, z, pts[i], pts[i + 1], eta);
        }
        EXPECT_TRUE(sbgm::test::all_close(fast.samples, x, 1e-9, 1e-9));
      }
    }
  }
}

// ---- one step objects' convention
// ---------------------------------------------

TEST(StepObjects, StepInRunOrderLikeTheDrivers) {
  auto process = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(process, Prediction::Epsilon);
  auto x_init = torch::randn({32, 2}, torch::kDouble);
  // (Each run gets a generator of its own with the same seed.)
  auto em_opts = [&] {
    return ss::EulerMaruyamaOptions().grid(20).common(
        common(61).x_init(x_init));
  };
  auto ref = ss::euler_maruyama(model, *process, {32, 2}, em_opts());
  ss::EulerMaruyamaSampler em(model, *process, em_opts());
  EXPECT_EQ(em.num_steps(), 20);
  EXPECT_EQ(em.time(0), 1.0);
  EXPECT_EQ(em.time(19), 1e-3);
  EXPECT_EQ(em.time(20), 0.0);
  auto x = x_init.clone();
  for (int64_t i = 0; i < em.num_steps(); ++i) {
    em.step(x, i);
  }
  EXPECT_TRUE(torch::equal(x, ref.samples));
  EXPECT_THROW_MSG(em.step(x, 20), "step must lie in [0, 20), got 20");

  auto sch =
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(50));
  auto dm = mixture().model(sch, Prediction::Epsilon);
  auto dd_opts = [&] {
    return ss::DDPMOptions().common(common(62).x_init(x_init));
  };
  auto dref = ss::ddpm(dm, *sch, {32, 2}, dd_opts());
  ss::DDPMSampler ddpm(dm, *sch, dd_opts());
  EXPECT_EQ(ddpm.num_steps(), 50);
  EXPECT_EQ(ddpm.time(0), 49.0);  // step 0 runs first, from t = T - 1
  EXPECT_EQ(ddpm.time(50), -1.0);
  x = x_init.clone();
  for (int64_t i = 0; i < ddpm.num_steps(); ++i) {
    ddpm.step(x, i);
  }
  EXPECT_TRUE(torch::equal(x, dref.samples));
}

TEST(Samplers, SameSeedSameSamplesTrajectoryProgressAndCallback) {
  auto process = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(process);
  auto opts = [&](uint64_t seed) {
    return ss::EulerMaruyamaOptions().grid(10).common(common(seed));
  };
  auto a = ss::euler_maruyama(model, *process, {64, 2}, opts(5));
  auto b = ss::euler_maruyama(model, *process, {64, 2}, opts(5));
  auto c = ss::euler_maruyama(model, *process, {64, 2}, opts(6));
  EXPECT_TRUE(torch::equal(a.samples, b.samples));
  EXPECT_FALSE(torch::equal(a.samples, c.samples));
  std::vector<std::pair<int64_t, int64_t>> calls;
  std::vector<torch::Tensor> x0s;
  auto o = opts(5);
  o.common()
      .trajectory_every(3)
      .progress([&](int64_t s, int64_t t) { calls.emplace_back(s, t); })
      .callback([&](const ss::StepInfo& s) { x0s.push_back(s.x0.clone()); });
  auto r = ss::euler_maruyama(model, *process, {64, 2}, o);
  // Start, steps 3, 6, 9, and the end (step 10).
  ASSERT_EQ(r.trajectory.size(), 5u);
  EXPECT_TRUE(torch::equal(r.trajectory.back(), r.samples));
  EXPECT_TRUE(torch::equal(r.samples, a.samples));
  ASSERT_EQ(calls.size(), 10u);
  EXPECT_EQ(calls.front(), (std::pair<int64_t, int64_t>(1, 10)));
  EXPECT_EQ(calls.back(), (std::pair<int64_t, int64_t>(10, 10)));
  // The callback's x0 of the last step is what Tweedie's step returned.
  ASSERT_EQ(x0s.size(), 10u);
  EXPECT_TRUE(sbgm::test::all_close(x0s.back(), r.samples, 1e-12, 1e-12));
}

TEST(Samplers, EveryPredictionGivesTheSameSamples) {
  // eps, score, x0 and v models of the same exact mixture: the samplers fold
  // the conversion into their coefficients; the results must agree.
  auto g = mixture();
  auto disc =
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(100));
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto x_init = torch::randn({256, 2}, torch::kDouble);
  auto init = [&](uint64_t seed) { return common(seed).x_init(x_init); };
  std::vector<torch::Tensor> ddpm, ddpm_clip, em, pc, ode;
  for (auto p :
       {Prediction::Epsilon,
        Prediction::Score,
        Prediction::X0,
        Prediction::V}) {
    auto dm = g.model(disc, p);
    ddpm.push_back(
        ss::ddpm(dm, *disc, {256, 2}, ss::DDPMOptions().common(init(1)))
            .samples);
    ddpm_clip.push_back(ss::ddpm(
                            dm,
                            *disc,
                            {256, 2},
                            ss::DDPMOptions().clip_x0(true).common(init(1)))
                            .samples);
    auto cm = g.model(vp, p);
    em.push_back(ss::euler_maruyama(
                     cm,
                     *vp,
                     {256, 2},
                     ss::EulerMaruyamaOptions().grid(100).common(init(2)))
                     .samples);
    pc.push_back(ss::predictor_corrector(
                     cm,
                     *vp,
                     {256, 2},
                     ss::PredictorCorrectorOptions().grid(50).common(init(4)))
                     .samples);
    ode.push_back(ss::ode(
                      cm,
                      *vp,
                      {256, 2},
                      ss::ODEOptions()
                          .method(ss::ODEMethod::Heun)
                          .grid(20)
                          .common(init(3)))
                      .samples);
  }
  for (size_t k = 1; k < 4; ++k) {
    EXPECT_TRUE(sbgm::test::all_close(ddpm[k], ddpm[0], 1e-6, 1e-6)) << k;
    EXPECT_TRUE(sbgm::test::all_close(ddpm_clip[k], ddpm_clip[0], 1e-6, 1e-6))
        << k;
    EXPECT_TRUE(sbgm::test::all_close(em[k], em[0], 1e-6, 1e-6)) << k;
    EXPECT_TRUE(sbgm::test::all_close(pc[k], pc[0], 1e-6, 1e-6)) << k;
    EXPECT_TRUE(sbgm::test::all_close(ode[k], ode[0], 1e-6, 1e-6)) << k;
  }
}

TEST(Samplers, EulerMaruyamaWeakOrderOne) {
  // 1-D Gaussian data N(0, 0.5^2) under VP: the exact score is linear,
  // -x / v(t) with v = a^2 0.25 + s^2, so Euler-Maruyama is the linear
  // recursion x <- A_k x + B_k z and E[x_n^2] = V_n with V_{k+1} = A_k^2 V_k
  // + B_k^2, V_0 = 1 (computed here in float64 from the formulas). (1) The
  // sampler's second moment matches V_n within Monte-Carlo error; (2) |V_n -
  // v(t_end)| falls at order 1 in the step size.
  auto process = std::make_shared<sbgm::VPSDE>();
  GaussianMixture g(
      torch::ones({1}, torch::kDouble),
      torch::zeros({1, 1}, torch::kDouble),
      torch::full({1}, 0.5, torch::kDouble));
  auto model = g.model(process, Prediction::Score);
  const double t_end = 1e-3;
  auto v = [&](double t) {
    return std::pow(process->alpha(t) * 0.5, 2) +
           std::pow(process->sigma(t), 2);
  };
  auto em_moment = [&](int64_t n) {
    const double h = (1.0 - t_end) / static_cast<double>(n);
    double V = 1.0;
    for (int64_t i = 0; i < n; ++i) {
      const double t = 1.0 - static_cast<double>(i) * h;
      const double gg = process->beta(t);
      const double A = 1.0 + 0.5 * gg * h - gg * h / v(t);
      V = A * A * V + gg * h;
    }
    return V;
  };
  const int64_t N = 200000;
  for (int64_t n : {10, 40}) {
    // n EM steps from 1 to t_end, without the final step to the data.
    auto grid =
        sbgm::grids::uniform(*process, n, sbgm::GridOptions().to_data(false));
    auto r = ss::euler_maruyama(
        model,
        *process,
        {N, 1},
        ss::EulerMaruyamaOptions().grid(grid).common(
            common(11 + static_cast<uint64_t>(n))));
    const double V = em_moment(n);
    const double est = r.samples.square().mean().item<double>();
    EXPECT_NEAR(est, V, 4 * V * std::sqrt(2.0 / N)) << "n = " << n;
    if (n == 10) {
      EXPECT_GT(std::abs(est - v(t_end)), 10 * V * std::sqrt(2.0 / N));
    }
  }
  std::vector<double> err;
  for (int64_t n : {50, 100, 200, 400, 800}) {
    err.push_back(std::abs(em_moment(n) - v(t_end)));
  }
  for (size_t i = 1; i < err.size(); ++i) {
    const double order = std::log(err[i - 1] / err[i]) / std::log(2.0);
    EXPECT_NEAR(order, 1.0, 0.15) << "halving " << i;
  }
}

// ---- zero terminal SNR
// --------------------------------------------------------

TEST(Samplers, ZeroTerminalSNRWithVAndEps) {
  // v-prediction samples the rescaled schedule from pure noise; an eps
  // model stays finite at the first step (alpha_T = 2^-12, not 0).
  auto g = mixture();
  auto zsnr = std::make_shared<sbgm::DiscreteProcess>(
      sbgm::Schedule::linear(1000).rescale_zero_terminal_snr());
  auto rv = ss::ddim(
      g.model(zsnr, Prediction::V),
      *zsnr,
      {kN, 2},
      ss::DDIMOptions()
          .grid(sbgm::grids::trailing(*zsnr, 50))
          .common(common(71)));
  check_samples(rv.samples, g, 0.03);
  auto re = ss::ddim(
      g.model(zsnr, Prediction::Epsilon),
      *zsnr,
      {kN, 2},
      ss::DDIMOptions()
          .grid(sbgm::grids::trailing(*zsnr, 50))
          .common(common(72)));
  EXPECT_TRUE(re.samples.isfinite().all().item<bool>());
  check_samples(re.samples, g, 0.03);
}

// ---- likelihood
// -----------------------------------------------------------------

TEST(Likelihood, GaussianDataMatchesClosedForm) {
  // Data N(mu, 0.6^2 I) in 3-D under VP: p_{t_end} is N(a mu, (a^2 0.36 +
  // s^2) I).
  auto process = std::make_shared<sbgm::VPSDE>();
  auto mu = torch::tensor({{0.5, -1.0, 0.2}}, torch::kDouble);
  GaussianMixture g(
      torch::ones({1}, torch::kDouble),
      mu,
      torch::full({1}, 0.6, torch::kDouble));
  auto model = g.model(process, Prediction::Epsilon);
  auto x = g.sample(16, gen(21), torch::kDouble);
  const double t_end = 1e-3;
  auto exact = g.log_prob(x, process->alpha(t_end), process->sigma(t_end));
  auto opts =
      ss::LikelihoodOptions().rtol(1e-7).atol(1e-7).t_end(t_end).generator(
          gen(22));
  auto r = ss::log_likelihood(model, *process, x, opts);
  // The estimate uses the prior N(0, I) for p_1; the exact marginal at t = 1
  // differs slightly (its mean a(1) mu): swap the one for the other.
  auto z = r.prior_sample;
  exact = exact + process->prior_log_prob(z) -
          g.log_prob(z, process->alpha(1.0), process->sigma(1.0));
  // The drift is linear with Jacobian c(t) I: Rademacher probes are exact.
  EXPECT_TRUE(sbgm::test::all_close(r.log_prob, exact, 0, 1e-4));
  EXPECT_GT(r.nfe, 0);
  EXPECT_TRUE(sbgm::test::all_close(
      r.bits_per_dim, -exact / (3 * std::log(2.0)), 0, 1e-4));
  auto r8 = ss::log_likelihood(
      model, *process, x, opts.num_bits(8).generator(gen(22)));
  EXPECT_TRUE(sbgm::test::all_close(
      r8.bits_per_dim, -exact / (3 * std::log(2.0)) + 7.0, 0, 1e-4));
  // Heun agrees too, and so does an EDM process on the same data.
  auto rh = ss::log_likelihood(
      model,
      *process,
      x,
      ss::LikelihoodOptions()
          .method(ss::ODEMethod::Heun)
          .num_steps(200)
          .t_end(t_end));
  EXPECT_TRUE(sbgm::test::all_close(rh.log_prob, exact, 0, 2e-3));
}

TEST(Likelihood, GaussianProbesAreUnbiasedOnEDM) {
  auto process = std::make_shared<sbgm::EDMProcess>(0.002, 80.0);
  auto g = mixture();
  auto model = g.model(process, Prediction::X0);
  auto x = g.sample(256, gen(31), torch::kDouble);
  const double t_end = 0.01;
  auto exact = g.log_prob(x, 1.0, t_end);
  auto r = ss::log_likelihood(
      model,
      *process,
      x,
      ss::LikelihoodOptions()
          .probe(ss::Probe::Gaussian)
          .rtol(1e-5)
          .atol(1e-5)
          .t_end(t_end)
          .generator(gen(32)));
  // The prior N(0, 80^2) for p_80 against its exact marginal.
  auto z = r.prior_sample;
  exact = exact + process->prior_log_prob(z) - g.log_prob(z, 1.0, 80.0);
  auto diff = r.log_prob - exact;
  double m = diff.mean().item<double>();
  double se = diff.std().item<double>() / std::sqrt(256.0);
  EXPECT_LT(std::abs(m), 4 * se + 1e-3) << "mean error " << m << " se " << se;
}

// ---- bad input
// ------------------------------------------------------------------

TEST(SamplersErrors, BadInput) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto disc =
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(10));
  auto g = mixture();
  auto cont = g.model(vp);
  auto dm = g.model(disc);
  EXPECT_THROW_MSG(
      ss::sample(cont, *vp, {4, 2}, ss::SampleOptions().sampler("euler_a")),
      "sample: unknown sampler 'euler_a'; valid names: ddim, ddpm, default");
  EXPECT_THROW_MSG(
      ss::sample(cont, *vp, {4, 2}, ss::SampleOptions().grid("exponential")),
      "unknown grid 'exponential'; valid names: default, uniform");
  EXPECT_THROW_MSG(
      ss::ddim(dm, *disc, {4, 2}, ss::DDIMOptions().eta(-1)),
      "eta must be finite and >= 0, got -1");
  EXPECT_THROW_MSG(
      ss::ddpm(
          dm, *disc, {4, 2}, ss::DDPMOptions().clip_x0(true).clip_range(0)),
      "clip_range must be finite and > 0, got 0");
  EXPECT_THROW_MSG(ss::DDIMOptions().grid(0), "num_steps must be >= 1, got 0");
  EXPECT_THROW_MSG(
      ss::ddim(
          dm, *disc, {4, 2}, ss::DDIMOptions().grid(TimeGrid({5.0, 12.0}))),
      "times must strictly decrease");
  EXPECT_THROW_MSG(
      ss::ddim(
          dm,
          *disc,
          {4, 2},
          ss::DDIMOptions().grid(TimeGrid({12.0, 5.0, -1.0}))),
      "ddim: grid time t[0] = 12 is outside the range of the discrete(linear, "
      "T=10) process");
  EXPECT_THROW_MSG(ss::ddpm(dm, *disc, {}), "at least one dimension");
  EXPECT_THROW_MSG(ss::ddpm(dm, *disc, {0, 2}), "every size in shape");
  EXPECT_THROW_MSG(
      ss::ddpm(
          dm,
          *disc,
          {4, 2},
          ss::DDPMOptions().common(
              ss::CommonOptions().x_init(torch::zeros({3, 2})))),
      "x_init has shape [3, 2] but the requested shape is [4, 2]");
  EXPECT_THROW_MSG(
      ss::ddpm(
          dm,
          *disc,
          {4, 2},
          ss::DDPMOptions().common(
              ss::CommonOptions().x_init(torch::full({4, 2}, NAN)))),
      "ddpm: x_init holds 8 non-finite values (NaN or Inf) among 8, the first "
      "at flat index 0");
  EXPECT_THROW_MSG(
      ss::ddpm(
          dm,
          *disc,
          {4, 2},
          ss::DDPMOptions().common(ss::CommonOptions().dtype(torch::kLong))),
      "dtype must be floating point");
  EXPECT_THROW_MSG(
      ss::ddpm(
          dm,
          *disc,
          {4, 2},
          ss::DDPMOptions().common(ss::CommonOptions().trajectory_every(-1))),
      "trajectory_every must be >= 0, got -1");
  EXPECT_THROW_MSG(
      ss::euler_maruyama(cont, *vp, {4, 3}), "x must have shape [N, 2]");
  EXPECT_THROW_MSG(
      ss::predictor_corrector(
          cont, *vp, {4, 2}, ss::PredictorCorrectorOptions().snr(0)),
      "snr must be finite and > 0, got 0");
  EXPECT_THROW_MSG(
      ss::predictor_corrector(
          cont,
          *vp,
          {4, 2},
          ss::PredictorCorrectorOptions().corrector_steps(-1)),
      "corrector_steps must be >= 0, got -1");
  EXPECT_THROW_MSG(
      ss::ode(cont, *vp, {4, 2}, ss::ODEOptions().rtol(0)),
      "rtol and atol must be > 0, got rtol = 0");
  EXPECT_THROW_MSG(
      ss::ode(
          cont,
          *vp,
          {4, 2},
          ss::ODEOptions().max_steps(2).rtol(1e-9).atol(1e-9)),
      "did not reach");
  auto x = torch::randn({4, 2}, torch::kDouble);
  EXPECT_THROW_MSG(
      ss::log_likelihood(cont, *vp, x, ss::LikelihoodOptions().num_bits(-1)),
      "num_bits must be >= 0, got -1");
  EXPECT_THROW_MSG(
      ss::log_likelihood(cont, *vp, torch::full({4, 2}, NAN, torch::kDouble)),
      "log_likelihood: x holds 8 non-finite values");
  EXPECT_THROW_MSG(
      ss::log_likelihood(cont, *vp, torch::ones({4, 2}, torch::kLong)),
      "floating-point");
}

TEST(SamplersErrors, DiscreteStepNetworkUnderAContinuousProcess) {
  // An MLP with a learned per-step embedding takes integer steps only.
  sbgm::MLP net(sbgm::MLPOptions(2).num_timesteps(100));
  sbgm::Model model(net, Prediction::Epsilon);
  EXPECT_EQ(model.discrete_steps(), 100);
  sbgm::VPSDE vp;
  const char* msg =
      "the model takes integer step indices in [0, 100) (a network with a "
      "learned per-step time embedding), but the vp(beta_min=0.1, "
      "beta_max=20) process feeds it continuous times";
  EXPECT_THROW_MSG(ss::ddim(model, vp, {4, 2}), msg);
  EXPECT_THROW_MSG(ss::ode(model, vp, {4, 2}), msg);
  sbgm::DiscreteProcess frac(
      sbgm::Schedule::linear(100),
      sbgm::DiscreteProcessOptions().quantize(false));
  EXPECT_THROW_MSG(ss::ddpm(model, frac, {4, 2}), "feeds it continuous times");
  sbgm::DiscreteProcess longer(sbgm::Schedule::linear(1000));
  EXPECT_THROW_MSG(
      ss::ddpm(model, longer, {4, 2}),
      "the discrete(linear, T=1000) process has 1000 steps but the model "
      "embeds only 100");
  // Under its own schedule it runs, on any spacing.
  sbgm::DiscreteProcess own(sbgm::Schedule::linear(100));
  auto r = ss::sample(
      model,
      own,
      {4, 2},
      ss::SampleOptions().sampler("ddim").grid("trailing").steps(5));
  EXPECT_EQ(r.nfe, 5);
}

TEST(SamplersErrors, BadModelOutput) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto disc =
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(10));
  sbgm::Model wrong_shape(
      [](const torch::Tensor& x, const torch::Tensor&) {
        return x.slice(1, 0, 1).clone();
      },
      Prediction::Score);
  EXPECT_THROW_MSG(
      ss::euler_maruyama(wrong_shape, *vp, {4, 2}), "the model returned shape");
  EXPECT_THROW_MSG(
      ss::ddpm(wrong_shape, *disc, {4, 2}), "the model returned shape");
  sbgm::Model nan_model(
      [](const torch::Tensor& x, const torch::Tensor&) {
        return torch::full_like(x, NAN);
      },
      Prediction::Epsilon);
  const char* msg = "the model produced non-finite values";
  for (const auto& name : ss::sampler_names()) {
    if (name == "dopri5") {
      continue;
    }
    SCOPED_TRACE(name);
    EXPECT_THROW_MSG(
        ss::sample(
            nan_model, *vp, {4, 2}, ss::SampleOptions().sampler(name).steps(5)),
        msg);
  }
  EXPECT_THROW_MSG(
      ss::sample(nan_model, *vp, {4, 2}, ss::SampleOptions().sampler("dopri5")),
      "non-finite values");
  // Trajectory record points check too.
  EXPECT_THROW_MSG(
      ss::euler_maruyama(
          nan_model,
          *vp,
          {4, 2},
          ss::EulerMaruyamaOptions().grid(5).common(
              ss::CommonOptions().trajectory_every(1))),
      msg);
}

}  // namespace
