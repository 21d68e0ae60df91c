// Every folded sampler (its per-step coefficients precomputed on the host)
// against its readable loop, written here in k-diffusion's style from the
// public update functions alone: equal to 1e-12 in float64, for every
// prediction type, with and without noise (the same draws fed to both), on
// several processes and grids that end at the data.

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sbgm/gmm.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/random.h"
#include "sbgm/samplers/samplers.h"
#include "sbgm/schedule.h"
#include "support.h"

namespace ss = sbgm::samplers;
namespace up = sbgm::samplers::update;
using sbgm::Prediction;
using sbgm::ProcessPoint;

namespace {

struct Case {
  std::string sampler;
  sbgm::Config options;
  std::string label;
};

// The readable loop of each folded sampler: one model call per step, the
// update of the paper, noise z drawn from `gen` where the step adds any.
torch::Tensor readable(
    const Case& c,
    const sbgm::Model& model,
    const sbgm::NoiseProcess& process,
    const std::vector<ProcessPoint>& pts,
    torch::Tensor x,
    torch::Generator gen) {
  const auto& o = c.options;
  auto num = [&](const char* k, double d) {
    return o.contains(k) ? o.at(k).get<double>() : d;
  };
  const double eta = num("eta", c.sampler == "euler_ancestral" ? 1.0 : 0.0);
  const double clip = num("clip_range", 0.0);
  const auto variance = o.contains("variance") ? ss::DDPMVariance::Posterior
                                               : ss::DDPMVariance::Beta;
  const bool stochastic = c.sampler == "ddpm" || c.sampler == "em" ||
                          c.sampler == "dpmpp_2m_sde" || eta > 0;
  const Prediction p = model.prediction();
  ss::ModelCaller call(model, process);
  torch::Tensor m1, m2;  // the x0 estimates of the last two steps
  for (size_t i = 0; i + 1 < pts.size(); ++i) {
    const ProcessPoint &from = pts[i], &to = pts[i + 1];
    const auto out = call(x, from.t);
    auto d = up::denoised(x, out, p, from);
    if (clip > 0) {
      d = up::denoised(x, d.x0.clamp(-clip, clip), Prediction::X0, from);
    }
    torch::Tensor z;
    if (stochastic && !to.is_data()) {
      z = torch::randn(x.sizes(), gen, x.options());
    }
    if (c.sampler == "ddpm") {
      x = up::ddpm(x, d.x0, z, from, to, variance);
    } else if (c.sampler == "ddim") {
      x = up::ddim(d.x0, d.eps, z, from, to, eta);
    } else if (c.sampler == "em") {
      const auto score = sbgm::convert_prediction(
          out, p, Prediction::Score, x, from.alpha, from.sigma);
      x = to.is_data() ? d.x0  // Tweedie's step into the data
                       : up::euler_maruyama(
                             x,
                             score,
                             z,
                             process.drift_coeff(from.t),
                             process.diffusion_sq(from.t),
                             from.t - to.t);
    } else if (c.sampler == "euler_ancestral") {
      x = up::euler_ancestral(x, d.x0, z, from, to, eta);
    } else if (c.sampler == "dpmpp_2m_sde") {
      x = i == 0 ? up::dpmpp_1_sde(x, d.x0, z, from, to)
                 : up::dpmpp_2m_sde(x, d.x0, m1, z, pts[i - 1], from, to);
    } else if (i == 0) {
      x = up::dpmpp_1(x, d.x0, from, to);
    } else if (c.sampler == "dpmpp_2m" || i == 1) {
      x = up::dpmpp_2m(x, d.x0, m1, pts[i - 1], from, to);
    } else {
      x = up::dpmpp_3m(x, d.x0, m1, m2, pts[i - 2], pts[i - 1], from, to);
    }
    m2 = m1;
    m1 = d.x0;
  }
  return x;
}

class FoldedSampler : public ::testing::TestWithParam<Case> {};

TEST_P(FoldedSampler, EqualsItsReadableLoop) {
  const Case& c = GetParam();
  const sbgm::GaussianMixture g(
      torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
      torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
      torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
  const std::vector<std::shared_ptr<sbgm::NoiseProcess>> processes = {
      std::make_shared<sbgm::VPSDE>(),
      std::make_shared<sbgm::EDMProcess>(),
      std::make_shared<sbgm::DiscreteProcess>(
          sbgm::Schedule::cosine(1000),
          sbgm::DiscreteProcessOptions().quantize(false))};
  uint64_t seed = 0;
  for (const auto& process : processes) {
    // Karras' grid (10 steps, into the data) on every process.
    const auto grid = sbgm::grids::karras(*process, 10);
    const auto pts = grid.points(*process);
    ASSERT_TRUE(pts.back().is_data());
    for (Prediction p :
         {Prediction::Epsilon,
          Prediction::X0,
          Prediction::V,
          Prediction::Score}) {
      SCOPED_TRACE(
          process->describe() + " " + c.label + " prediction " +
          std::to_string(static_cast<int>(p)));
      const auto model = g.model(process, p);
      const auto x1 =
          torch::randn({16, 2}, sbgm::make_generator(++seed), torch::kDouble) *
          pts.front().scaled_sigma() * pts.front().alpha;
      auto options = c.options;
      if (c.sampler.rfind("dpmpp", 0) == 0) {
        options["lower_order_final"] = false;  // the readable loop's orders
      }
      const auto folded =
          ss::sample(
              model,
              *process,
              {16, 2},
              ss::SampleOptions()
                  .sampler(c.sampler)
                  .options(options)
                  .time_grid(grid)
                  .common(ss::CommonOptions()
                              .dtype(torch::kDouble)
                              .x_init(x1)
                              .generator(sbgm::make_generator(seed + 100))))
              .samples;
      c10::InferenceMode guard;
      const auto want = readable(
          c,
          model,
          *process,
          pts,
          x1.clone(),
          sbgm::make_generator(seed + 100));
      ASSERT_TRUE(want.isfinite().all().item<bool>());
      EXPECT_TRUE(sbgm::test::all_close(folded, want, 1e-12, 1e-12))
          << "max diff " << sbgm::test::max_abs_diff(folded, want);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Samplers,
    FoldedSampler,
    ::testing::Values(
        Case{"ddpm", sbgm::Config::object(), "ddpm"},
        Case{"ddpm", {{"variance", "posterior"}}, "ddpm_posterior"},
        Case{"ddpm", {{"clip_range", 1.5}}, "ddpm_clip"},
        Case{"ddim", sbgm::Config::object(), "ddim"},
        Case{"ddim", {{"eta", 0.7}}, "ddim_eta"},
        Case{"ddim", {{"eta", 0.5}, {"clip_range", 1.5}}, "ddim_eta_clip"},
        Case{"em", sbgm::Config::object(), "em"},
        Case{"euler_ancestral", sbgm::Config::object(), "euler_ancestral"},
        Case{"euler_ancestral", {{"eta", 0.0}}, "euler_ancestral_eta0"},
        Case{"dpmpp_2m", sbgm::Config::object(), "dpmpp_2m"},
        Case{"dpmpp_3m", sbgm::Config::object(), "dpmpp_3m"},
        Case{"dpmpp_2m_sde", sbgm::Config::object(), "dpmpp_2m_sde"}),
    [](const auto& info) { return info.param.label; });

}  // namespace
