// CUDA-graph sampling (CommonOptions::cuda_graph) against eager sampling, and
// the DDIM step table against the DDIM formulas run one operation at a time.

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>

#include "sbgm/gmm.h"
#include "sbgm/grid.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/random.h"
#include "sbgm/samplers/likelihood.h"
#include "sbgm/samplers/samplers.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace ss = sbgm::samplers;
using sbgm::GaussianMixture;
using sbgm::Prediction;

namespace {

GaussianMixture mixture() {
  return GaussianMixture(
      torch::tensor({0.25, 0.75}, torch::kDouble),
      torch::tensor({{-1.5, 0.5}, {1.0, -0.5}}, torch::kDouble),
      torch::tensor({0.3, 0.5}, torch::kDouble));
}

torch::Generator gen(uint64_t seed) {
  return sbgm::make_generator(seed);
}

/// Runs `sample(common)` eagerly and with cuda_graph on CUDA from the same
/// start and seed (the default CUDA generator, reseeded) and expects the
/// same samples, trajectory and progress calls.
template <class Sample>
void expect_graph_matches_eager(
    Sample sample, torch::ScalarType dtype, double tol, const char* what) {
  const auto dev = torch::Device(torch::kCUDA);
  auto x_init =
      torch::randn({256, 2}, gen(1), torch::kDouble).to(dev).to(dtype);
  auto run = [&](bool graph, std::vector<int64_t>* calls) {
    torch::cuda::manual_seed(17);
    auto c =
        ss::CommonOptions()
            .device(dev)
            .dtype(dtype)
            .x_init(x_init)
            .trajectory_every(4)
            .cuda_graph(graph)
            .progress([calls](int64_t s, int64_t) { calls->push_back(s); });
    return sample(c);
  };
  std::vector<int64_t> eager_calls, graph_calls;
  auto eager = run(false, &eager_calls);
  auto graphed = run(true, &graph_calls);
  EXPECT_EQ(graphed.nfe, eager.nfe) << what;
  EXPECT_EQ(graph_calls, eager_calls) << what;
  ASSERT_EQ(graphed.samples.device(), eager.samples.device()) << what;
  EXPECT_TRUE(sbgm::test::all_close(graphed.samples, eager.samples, tol, tol))
      << what << ": max |diff| "
      << (graphed.samples - eager.samples).abs().max().template item<double>();
  ASSERT_EQ(graphed.trajectory.size(), eager.trajectory.size()) << what;
  for (size_t k = 0; k < eager.trajectory.size(); ++k) {
    EXPECT_TRUE(sbgm::test::all_close(
        graphed.trajectory[k], eager.trajectory[k], tol, tol))
        << what << ": trajectory " << k;
  }
  // The run moved the state: a graph that replayed nothing would fail here.
  EXPECT_FALSE(sbgm::test::all_close(graphed.samples, x_init, 1e-3, 1e-3))
      << what;
}

}  // namespace

TEST(CudaGraph, DiscreteSamplersMatchEager) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "CUDA is not available";
  }
  auto sched =
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(60));
  auto g = mixture().to(torch::Device(torch::kCUDA));
  for (auto p :
       {Prediction::Epsilon,
        Prediction::Score,
        Prediction::X0,
        Prediction::V}) {
    auto model = g.model(sched, p);
    expect_graph_matches_eager(
        [&](const ss::CommonOptions& c) {
          return ss::ddpm(model, *sched, {256, 2}, ss::DDPMOptions().common(c));
        },
        torch::kDouble,
        1e-9,
        "ddpm");
    expect_graph_matches_eager(
        [&](const ss::CommonOptions& c) {
          return ss::ddpm(
              model,
              *sched,
              {256, 2},
              ss::DDPMOptions()
                  .variance(ss::DDPMVariance::Posterior)
                  .clip_x0(true)
                  .clip_range(1.2)
                  .common(c));
        },
        torch::kDouble,
        1e-9,
        "ddpm, posterior variance and clipping");
    for (double eta : {0.0, 0.7}) {
      expect_graph_matches_eager(
          [&](const ss::CommonOptions& c) {
            return ss::ddim(
                model,
                *sched,
                {256, 2},
                ss::DDIMOptions().grid(13).eta(eta).clip_x0(eta > 0).common(c));
          },
          torch::kDouble,
          1e-9,
          "ddim");
    }
  }
}

TEST(CudaGraph, RefusesReducedPrecisionStates) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "CUDA is not available";
  }
  auto sched =
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(10));
  auto model = mixture().to(torch::Device(torch::kCUDA)).model(sched);
  EXPECT_THROW_MSG(
      ss::ddpm(
          model,
          *sched,
          {8, 2},
          ss::DDPMOptions().common(ss::CommonOptions()
                                       .device(torch::Device(torch::kCUDA))
                                       .dtype(torch::kHalf)
                                       .cuda_graph(true))),
      "the state must be float32 or float64, got Half");
}

TEST(CudaGraph, EulerMaruyamaMatchesEager) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "CUDA is not available";
  }
  auto g = mixture().to(torch::Device(torch::kCUDA));
  std::vector<std::shared_ptr<sbgm::NoiseProcess>> sdes{
      std::make_shared<sbgm::VPSDE>(),
      std::make_shared<sbgm::VESDE>(10.0),
      std::make_shared<sbgm::EDMProcess>()};
  for (const auto& sde : sdes) {
    for (auto p : {Prediction::Score, Prediction::Epsilon}) {
      auto model = g.model(sde, p);
      for (auto dtype : {torch::kDouble, torch::kFloat}) {
        expect_graph_matches_eager(
            [&](const ss::CommonOptions& c) {
              return ss::euler_maruyama(
                  model,
                  *sde,
                  {256, 2},
                  ss::EulerMaruyamaOptions().grid(40).common(c));
            },
            dtype,
            dtype == torch::kDouble ? 1e-9 : 2e-4,
            "euler_maruyama");
      }
    }
  }
}

TEST(CudaGraph, NetworkModelMatchesEager) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "CUDA is not available";
  }
  torch::manual_seed(3);
  const auto dev = torch::Device(torch::kCUDA);
  sbgm::DiscreteProcess sched(sbgm::Schedule::cosine(100));
  sbgm::MLP learned(sbgm::MLPOptions(2).hidden(64).num_timesteps(100));
  learned->to(dev);
  learned->eval();
  sbgm::Model m1(learned, Prediction::Epsilon);
  expect_graph_matches_eager(
      [&](const ss::CommonOptions& c) {
        return ss::ddpm(m1, sched, {256, 2}, ss::DDPMOptions().common(c));
      },
      torch::kFloat,
      2e-4,
      "ddpm with a learned-embedding MLP");
  sbgm::MLP fourier(sbgm::MLPOptions(2).hidden(64).embedding(
      sbgm::TimeEmbeddingKind::Fourier));
  fourier->to(dev);
  fourier->eval();
  sbgm::Model m2(fourier, Prediction::Score);
  auto sde = std::make_shared<sbgm::VPSDE>();
  expect_graph_matches_eager(
      [&](const ss::CommonOptions& c) {
        return ss::euler_maruyama(
            m2, *sde, {256, 2}, ss::EulerMaruyamaOptions().grid(30).common(c));
      },
      torch::kFloat,
      2e-4,
      "euler_maruyama with a Fourier-embedding MLP");
}

// On CPU states the flag changes nothing: the same samples, bit for bit.
TEST(CudaGraph, NoEffectOnCpu) {
  auto sched =
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::linear(30));
  auto g = mixture();
  auto model = g.model(sched, Prediction::Score);
  auto sde = std::make_shared<sbgm::VESDE>(10.0);
  auto sde_model = g.model(sde, Prediction::Epsilon);
  auto c = [](bool graph) {
    return ss::CommonOptions()
        .generator(gen(9))
        .dtype(torch::kDouble)
        .cuda_graph(graph);
  };
  EXPECT_TRUE(torch::equal(
      ss::ddpm(model, *sched, {64, 2}, ss::DDPMOptions().common(c(true)))
          .samples,
      ss::ddpm(model, *sched, {64, 2}, ss::DDPMOptions().common(c(false)))
          .samples));
  auto dopts = [&](bool graph) {
    return ss::DDIMOptions().grid(7).eta(0.5).common(c(graph));
  };
  EXPECT_TRUE(torch::equal(
      ss::ddim(model, *sched, {64, 2}, dopts(true)).samples,
      ss::ddim(model, *sched, {64, 2}, dopts(false)).samples));
  auto eopts = [&](bool graph) {
    return ss::EulerMaruyamaOptions().grid(12).common(c(graph));
  };
  EXPECT_TRUE(torch::equal(
      ss::euler_maruyama(sde_model, *sde, {64, 2}, eopts(true)).samples,
      ss::euler_maruyama(sde_model, *sde, {64, 2}, eopts(false)).samples));
}

TEST(CudaGraph, OtherSamplersRefuseTheFlag) {
  auto g = mixture();
  auto sde = std::make_shared<sbgm::VPSDE>();
  auto model = g.model(sde);
  auto c = ss::CommonOptions().cuda_graph(true);
  const char* msg = "cuda_graph is supported by ddpm, ddim and euler_maruyama";
  EXPECT_THROW_MSG(
      ss::predictor_corrector(
          model, *sde, {4, 2}, ss::PredictorCorrectorOptions().common(c)),
      msg);
  EXPECT_THROW_MSG(
      ss::ode(model, *sde, {4, 2}, ss::ODEOptions().common(c)), msg);
}

// DDIM's folded step table against eq. 12 of Song, Meng & Ermon evaluated
// operation by operation in float64, for every prediction, with and without
// clipping and noise: x0 = (x - s eps) / m (clipped, then eps recomputed from
// it), x_p = sqrt(a_p) x0 + sqrt(1 - a_p - sigma^2) eps + sigma z.
TEST(Samplers, DDIMStepTableMatchesFormula) {
  const int64_t T = 40, S = 9, N = 128;
  auto sched = sbgm::Schedule::sigmoid(T);
  auto process = std::make_shared<sbgm::DiscreteProcess>(sched);
  auto g = mixture();
  auto eps_model = g.model(process, Prediction::Epsilon);
  auto x_init = torch::randn({N, 2}, gen(5), torch::kDouble);
  // The linspace steps round(j (T - 1) / (S - 1)), ascending.
  std::vector<int64_t> tau;
  for (int64_t j = 0; j < S; ++j) {
    tau.push_back(
        static_cast<int64_t>(std::nearbyint(j * (T - 1.0) / (S - 1))));
  }
  for (auto p :
       {Prediction::Epsilon,
        Prediction::Score,
        Prediction::X0,
        Prediction::V}) {
    for (double eta : {0.0, 0.6}) {
      for (bool clip : {false, true}) {
        auto model = g.model(process, p);
        auto opts =
            ss::DDIMOptions()
                .grid(S)
                .eta(eta)
                .clip_x0(clip)
                .clip_range(0.8)
                .common(ss::CommonOptions().x_init(x_init).generator(gen(11)));
        auto got = ss::ddim(model, *process, {N, 2}, opts);
        // Reference.
        auto rng = gen(11);
        auto x = x_init.clone();
        for (int64_t j = S - 1; j >= 0; --j) {
          const int64_t ti = tau[static_cast<size_t>(j)];
          const double a_t = sched.alpha_bar(ti);
          const double a_p =
              j > 0 ? sched.alpha_bar(tau[static_cast<size_t>(j - 1)]) : 1.0;
          auto eps = eps_model(x, torch::full({N}, ti, torch::kLong));
          auto x0 = (x - std::sqrt(1 - a_t) * eps) / std::sqrt(a_t);
          if (clip) {
            x0 = x0.clamp(-0.8, 0.8);
            eps = (x - std::sqrt(a_t) * x0) / std::sqrt(1 - a_t);
          }
          const double sigma =
              eta * std::sqrt((1 - a_p) / (1 - a_t)) * std::sqrt(1 - a_t / a_p);
          x = std::sqrt(a_p) * x0 +
              std::sqrt(std::max(1 - a_p - sigma * sigma, 0.0)) * eps;
          if (sigma > 0) {
            x = x + sigma * torch::randn({N, 2}, rng, torch::kDouble);
          }
        }
        EXPECT_TRUE(sbgm::test::all_close(got.samples, x, 1e-9, 1e-9))
            << "prediction " << static_cast<int>(p) << " eta " << eta
            << " clip " << clip << ": max |diff| "
            << (got.samples - x).abs().max().item<double>();
      }
    }
  }
}
