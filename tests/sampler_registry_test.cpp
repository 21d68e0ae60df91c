// Samplers by name: the registry (built-ins, a user's own sampler, each
// sampler's options read from its JSON config and their errors), and a
// user's own loop written from the public update functions that steps into
// the data.

#include <algorithm>
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
#include "support.h"

namespace ss = sbgm::samplers;
using sbgm::GaussianMixture;
using sbgm::Prediction;
using sbgm::ProcessPoint;

namespace {

GaussianMixture mixture() {
  return GaussianMixture(
      torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
      torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
      torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
}

ss::CommonOptions common(uint64_t seed) {
  return ss::CommonOptions()
      .generator(sbgm::make_generator(seed))
      .dtype(torch::kDouble);
}

TEST(SamplerRegistry, BuiltinsAndAliasesAreRegistered) {
  const auto names = ss::sampler_names();
  for (const char* n :
       {"default",
        "ddpm",
        "ddim",
        "euler_maruyama",
        "em",
        "pc",
        "ode",
        "ode_euler",
        "dopri5",
        "euler",
        "heun",
        "euler_ancestral",
        "dpmpp_2m",
        "dpmpp_3m",
        "dpmpp_2m_sde",
        "unipc"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  EXPECT_EQ(names, ss::sampler_registry().names());
}

TEST(SamplerRegistry, OptionsByNameEqualTheOptionsStruct) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(vp, Prediction::Epsilon);
  auto by_name = ss::sample(
      model,
      *vp,
      {16, 2},
      ss::SampleOptions()
          .sampler("ddim")
          .steps(10)
          .set("eta", 0.5)
          .common(common(3)));
  auto direct = ss::ddim(
      model,
      *vp,
      {16, 2},
      ss::DDIMOptions().grid(10).eta(0.5).common(common(3)));
  EXPECT_TRUE(torch::equal(by_name.samples, direct.samples));
  // The same with the options as one JSON object, and the alias "default".
  auto heun = ss::sample(
      model,
      *vp,
      {16, 2},
      ss::SampleOptions()
          .sampler("heun")
          .steps(6)
          .options({{"s_churn", 10.0}, {"s_noise", 1.01}})
          .common(common(4)));
  auto heun_direct = ss::heun(
      model,
      *vp,
      {16, 2},
      ss::HeunOptions().grid(6).s_churn(10).s_noise(1.01).common(common(4)));
  EXPECT_TRUE(torch::equal(heun.samples, heun_direct.samples));
  EXPECT_TRUE(torch::equal(
      ss::sample(
          model, *vp, {16, 2}, ss::SampleOptions().steps(7).common(common(5)))
          .samples,
      ss::sample(
          model,
          *vp,
          {16, 2},
          ss::SampleOptions().sampler("dpmpp_2m").steps(7).common(common(5)))
          .samples));
}

TEST(SamplerRegistry, AUserSamplerRunsByName) {
  // A user's own sampler (DDIM with eta = 0 written from the public update
  // functions, with an option "scale" on its result), registered once and
  // run by name like the built-ins.
  ss::sampler_registry().add("test_my_ddim", [](const sbgm::Config& c) {
    const double scale = c.is_object() && c.contains("scale")
                             ? c.at("scale").get<double>()
                             : 1.0;
    ss::Sampler s;
    s.default_steps = [](const sbgm::NoiseProcess&) { return int64_t{12}; };
    s.run = [scale](
                const sbgm::Model& model,
                const sbgm::NoiseProcess& process,
                torch::IntArrayRef shape,
                const ss::GridSpec& grid,
                const ss::CommonOptions& options) {
      c10::InferenceMode guard;
      const auto pts = grid.resolve(process, 12).points(process);
      auto x = ss::initial_state(
          process, pts.front().t, shape, options, "test_my_ddim");
      ss::ModelCaller call(ss::batch_invariant_model(model, options), process);
      ss::SamplerLoop loop(options, pts.size() - 1, "test_my_ddim");
      loop.start(x);
      for (size_t i = 0; i + 1 < pts.size(); ++i) {
        auto d = ss::update::denoised(
            x, call(x, pts[i].t), model.prediction(), pts[i]);
        x = ss::update::ddim(
            d.x0, d.eps, torch::Tensor(), pts[i], pts[i + 1], 0.0);
        loop.step(static_cast<int64_t>(i + 1), pts[i + 1].t, x, d.x0);
      }
      return loop.finish(x * scale, call.nfe());
    };
    return s;
  });
  auto names = ss::sampler_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "test_my_ddim"), names.end());
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(vp, Prediction::Epsilon);
  auto x_init = torch::randn({8, 2}, torch::kDouble);
  auto mine = ss::sample(
      model,
      *vp,
      {8, 2},
      ss::SampleOptions()
          .sampler("test_my_ddim")
          .grid("uniform")
          .set("scale", 2.0)
          .common(common(0).x_init(x_init)));
  auto ref = ss::ddim(
      model,
      *vp,
      {8, 2},
      ss::DDIMOptions()
          .grid(sbgm::grids::uniform(*vp, 12))
          .common(common(0).x_init(x_init)));
  EXPECT_EQ(mine.nfe, 12);
  EXPECT_TRUE(
      sbgm::test::all_close(mine.samples, 2.0 * ref.samples, 1e-12, 1e-12));
  EXPECT_THROW_MSG(
      ss::sampler_registry().add(
          "ddim", [](const sbgm::Config&) { return ss::Sampler{}; }),
      "register sampler 'ddim': the name is taken");
}

TEST(SamplerRegistry, BadOptionsNameTheField) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(vp, Prediction::Epsilon);
  auto run = [&](ss::SampleOptions o) {
    return ss::sample(model, *vp, {2, 2}, o.steps(3));
  };
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("ddim").set("etta", 0.5)),
      "sampler 'ddim': unknown option 'etta'; allowed: eta, clip_x0, "
      "clip_range");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("em").set("eta", 0.5)),
      "sampler 'em': unknown option 'eta'; allowed: none");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("ddim").options(sbgm::Config::array())),
      "sampler 'ddim': options must be a JSON object, got []");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("ddim").set("eta", "big")),
      "sampler 'ddim': option 'eta' must be a number, got \"big\"");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("pc").set("corrector_steps", 1.5)),
      "sampler 'pc': option 'corrector_steps' must be an integer, got 1.5");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("dpmpp_2m").set("lower_order_final", 1)),
      "sampler 'dpmpp_2m': option 'lower_order_final' must be true or false, "
      "got 1");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("ddpm").set("variance", "large")),
      "sampler 'ddpm': option 'variance' must be one of beta, posterior, got "
      "'large'");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("ddpm").set("variance", 2.0)),
      "sampler 'ddpm': option 'variance' must be one of beta, posterior, got "
      "2.0");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("unipc").set("order", 4)),
      "unipc: order must be 1, 2 or 3, got 4");
  EXPECT_THROW_MSG(
      run(ss::SampleOptions().sampler("heun").set("s_churn", -2)),
      "s_churn must be finite and >= 0, got -2");
  EXPECT_THROW_MSG(
      ss::SampleOptions().options(sbgm::Config::array()).set("eta", 1.0),
      "SampleOptions::set: options() is not a JSON object but []");
  // The options of one SampleOptions do not leak into its copies.
  auto a = ss::SampleOptions().set("eta", 0.5);
  auto b = a;
  b.set("eta", 0.25).set("clip_range", 2);
  EXPECT_EQ(a.options().at("eta").get<double>(), 0.5);
  EXPECT_FALSE(a.options().contains("clip_range"));
  EXPECT_EQ(b.options().at("eta").get<double>(), 0.25);
}

// A user's loop in k-diffusion's sample_dpmpp_2m style, from the public
// update functions alone, on a grid that ends at the data: the last step
// (h = inf) is handled inside the update functions.
torch::Tensor my_dpmpp(
    const sbgm::Model& model,
    const sbgm::NoiseProcess& process,
    const sbgm::TimeGrid& grid,
    torch::Tensor x,
    int order) {
  const auto pts = grid.points(process);
  ss::ModelCaller call(model, process);
  torch::Tensor old1, old2;
  for (size_t i = 0; i + 1 < pts.size(); ++i) {
    const auto m0 =
        ss::update::x0_of(x, call(x, pts[i].t), model.prediction(), pts[i]);
    if (i == 0) {
      x = ss::update::dpmpp_1(x, m0, pts[i], pts[i + 1]);
    } else if (order == 2 || i == 1) {
      x = ss::update::dpmpp_2m(x, m0, old1, pts[i - 1], pts[i], pts[i + 1]);
    } else {
      x = ss::update::dpmpp_3m(
          x, m0, old1, old2, pts[i - 2], pts[i - 1], pts[i], pts[i + 1]);
    }
    old2 = old1;
    old1 = m0;
  }
  return x;
}

TEST(UserLoop, StepsIntoTheDataWithFiniteSamples) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto model = mixture().model(vp, Prediction::Epsilon);
  const auto grid = sbgm::grids::log_snr(*vp, 12);  // ends at the data
  ASSERT_TRUE(vp->at(grid.times().back()).is_data());
  auto x1 = torch::randn({32, 2}, torch::kDouble);
  for (int order : {2, 3}) {
    c10::InferenceMode guard;
    const auto mine = my_dpmpp(model, *vp, grid, x1.clone(), order);
    EXPECT_TRUE(mine.isfinite().all().item<bool>()) << order;
    // Equal to the built-in sampler without lowering the order before the
    // last step (the step into the data is first order in both).
    const auto builtin = ss::dpm_solver(
        model,
        *vp,
        {32, 2},
        ss::DPMSolverOptions()
            .grid(grid)
            .order(order)
            .lower_order_final(false)
            .common(common(0).x_init(x1)));
    EXPECT_TRUE(sbgm::test::all_close(mine, builtin.samples, 1e-12, 1e-12))
        << order << ": " << sbgm::test::max_abs_diff(mine, builtin.samples);
  }
  // The SDE update and Heun's correction into the data: the first-order
  // result, finite.
  const auto from = vp->at(0.01), prev = vp->at(0.02), to = vp->at(0.0);
  ASSERT_TRUE(to.is_data());
  auto m0 = torch::randn({4, 2}, torch::kDouble);
  auto m1 = torch::randn({4, 2}, torch::kDouble);
  auto z = torch::randn({4, 2}, torch::kDouble);
  EXPECT_TRUE(torch::equal(
      ss::update::dpmpp_2m_sde(x1.slice(0, 0, 4), m0, m1, z, prev, from, to),
      m0));
  auto x_pred = ss::update::euler(x1.slice(0, 0, 4), m0, from, to);
  EXPECT_TRUE(torch::equal(
      ss::update::heun_correct(x1.slice(0, 0, 4), m0, x_pred, m1, from, to),
      x_pred));
}

}  // namespace
