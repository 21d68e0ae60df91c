// sbgm-quality: sample quality per model evaluation, and the solvers'
// convergence orders.
//
//   sbgm-quality --table orders    endpoint error against a Dopri5 solution
//                                  at NFE 8..256 and the fitted order, per
//                                  deterministic solver (the test's setup)
//   sbgm-quality --table gmm       distance to what an exact sampler returns
//                                  (the mixture at t_min = 1e-3 denoised by
//                                  Tweedie's x0) at NFE 10, 20, 50, 1000 for
//                                  every sampler, exact scores of a 2-D
//                                  mixture under VP
//   sbgm-quality --table swiss     the same for the swiss-roll demo's model
//                                  (trained here, 20,000 steps, ~20 s), on
//                                  its 200-step schedule (NFE up to 200)
//
// Distances: the sliced Wasserstein distance of 10,000 samples to fresh data
// over its floor (the same between fresh draws), each averaged over 4
// draws; 1 means as close as the data is to itself.

#include <sbgm/sbgm.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ss = sbgm::samplers;

namespace {

using Draw = std::function<torch::Tensor(int64_t n, uint64_t seed)>;

double ratio(const torch::Tensor& samples, const Draw& data) {
  double s = 0, f = 0;
  for (uint64_t k = 0; k < 4; ++k) {
    auto a = data(samples.size(0), 100 + k);
    auto b = data(samples.size(0), 200 + k);
    auto sw = [](const torch::Tensor& x, const torch::Tensor& y) {
      return sbgm::metrics::sliced_wasserstein(
                 x.to(torch::kFloat),
                 y.to(torch::kFloat),
                 256,
                 sbgm::make_generator(7))
          .item<double>();
    };
    s += sw(samples, a);
    f += sw(b, a);
  }
  return s / f;
}

struct Row {
  std::string sampler, grid;
  int evals_per_step;  // 2 for heun/ode/pc (the last step into the data: 1)
  ss::DDPMVariance variance = ss::DDPMVariance::Beta;
};

// The samplers of the table, each on the grid it is made for.
std::vector<Row> rows(bool discrete) {
  const std::string spaced = discrete ? "linspace" : "uniform";
  return {
      {"ddpm", spaced, 1},
      {"ddpm", spaced, 1, ss::DDPMVariance::Posterior},
      {"ddim", spaced, 1},
      {"ddim", discrete ? "trailing" : "logsnr", 1},
      {"euler_ancestral", "karras", 1},
      {"em", spaced, 1},
      {"pc", spaced, 2},
      {"ode", "karras", 2},
      {"heun", "karras", 2},
      {"dpmpp_2m", "karras", 1},
      {"dpmpp_3m", "karras", 1},
      {"dpmpp_2m_sde", "karras", 1},
  };
}

// --sampler / --grid narrow the rows (every row when empty); --grid also
// overrides each row's grid.
std::string g_only_sampler, g_grid;

void quality_table(
    const sbgm::Model& model,
    const sbgm::NoiseProcess& process,
    const Draw& data,
    const std::vector<int64_t>& nfes,
    const std::function<torch::Tensor(const torch::Tensor&)>& to_data) {
  std::printf("| sampler | grid |");
  for (auto n : nfes) {
    std::printf(" NFE %lld |", static_cast<long long>(n));
  }
  std::printf("\n| --- | --- |");
  for (size_t i = 0; i < nfes.size(); ++i) {
    std::printf(" ---: |");
  }
  std::printf("\n");
  for (auto r : rows(process.name() == "discrete")) {
    if (!g_only_sampler.empty() && r.sampler != g_only_sampler) {
      continue;
    }
    if (!g_grid.empty()) {
      r.grid = g_grid;
    }
    const bool posterior = r.variance == ss::DDPMVariance::Posterior;
    std::printf(
        "| %s%s | %s |",
        r.sampler.c_str(),
        posterior ? " (posterior variance)" : "",
        r.grid.c_str());
    for (auto nfe : nfes) {
      // Steps for about this many evaluations (2 per step: 2 s - 1).
      const int64_t steps =
          r.evals_per_step == 1 ? nfe : std::max<int64_t>(1, (nfe + 1) / 2);
      try {
        auto so = ss::SampleOptions()
                      .sampler(r.sampler)
                      .grid(r.grid)
                      .steps(steps)
                      .common(ss::CommonOptions().generator(
                          sbgm::make_generator(11)));
        if (posterior) {
          so.set("variance", "posterior");
        }
        auto res = ss::sample(model, process, {10000, 2}, so);
        std::printf(
            " %.2f (%lld) |",
            ratio(to_data(res.samples), data),
            static_cast<long long>(res.nfe));
      } catch (const c10::Error& e) {
        std::printf(" n/a |");
      }
      std::fflush(stdout);
    }
    std::printf("\n");
  }
}

void orders() {
  auto vp = std::make_shared<sbgm::VPSDE>();
  sbgm::GaussianMixture g(
      torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
      torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
      torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
  auto model = g.model(vp, sbgm::Prediction::Epsilon);
  const double t_end = 0.01;
  const auto p1 = vp->at(1.0);
  auto x1 = sbgm::GaussianMixture(
                g.weights(),
                g.means() * p1.alpha,
                (g.stds() * p1.alpha).square().add(p1.sigma * p1.sigma).sqrt())
                .sample(64, sbgm::make_generator(5), torch::kDouble);
  auto common = ss::CommonOptions().dtype(torch::kDouble).x_init(x1);
  auto ref = ss::ode(
                 model,
                 *vp,
                 {64, 2},
                 ss::ODEOptions()
                     .grid(sbgm::TimeGrid({1.0, t_end}))
                     .rtol(1e-12)
                     .atol(1e-12)
                     .max_steps(100000)
                     .common(common))
                 .samples;
  const std::vector<int64_t> nfes = {8, 16, 32, 64, 128, 256};
  std::printf("| solver |");
  for (auto n : nfes) {
    std::printf(" NFE %lld |", static_cast<long long>(n));
  }
  std::printf(" order |\n| --- |");
  for (size_t i = 0; i <= nfes.size(); ++i) {
    std::printf(" ---: |");
  }
  std::printf("\n");
  for (auto [name, per] : std::vector<std::pair<std::string, int>>{
           {"euler", 1},
           {"ddim", 1},
           {"heun", 2},
           {"dpmpp_2m", 1},
           {"dpmpp_3m", 1}}) {
    std::printf("| %s |", name.c_str());
    std::vector<double> lx, ly;
    for (auto nfe : nfes) {
      auto grid = sbgm::grids::log_snr(
          *vp, nfe / per, sbgm::GridOptions().to_data(false).t_end(t_end));
      auto r = ss::sample(
          model,
          *vp,
          {64, 2},
          ss::SampleOptions().sampler(name).time_grid(grid).common(common));
      const double err =
          (r.samples - ref).square().sum(1).sqrt().median().item<double>();
      std::printf(" %.2e |", err);
      lx.push_back(std::log(static_cast<double>(nfe)));
      ly.push_back(std::log(err));
    }
    double mx = 0, my = 0, sxy = 0, sxx = 0;
    for (size_t i = 0; i < lx.size(); ++i) {
      mx += lx[i] / lx.size();
      my += ly[i] / ly.size();
    }
    for (size_t i = 0; i < lx.size(); ++i) {
      sxy += (lx[i] - mx) * (ly[i] - my);
      sxx += (lx[i] - mx) * (lx[i] - mx);
    }
    std::printf(" %.2f |\n", -sxy / sxx);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string table = "gmm";
  CLI::App app{"sbgm-quality: sample quality per model evaluation"};
  app.add_option("--table", table, "orders, gmm or swiss")
      ->check(CLI::IsMember({"orders", "gmm", "swiss"}));
  app.add_option("--sampler", g_only_sampler, "only this sampler's rows")
      ->check(CLI::IsMember(ss::sampler_names()));
  app.add_option("--grid", g_grid, "every row on this grid")
      ->check(CLI::IsMember(sbgm::grids::names()));
  CLI11_PARSE(app, argc, argv);
  sbgm::tune_cpu_allocator();
  sbgm::set_num_threads(1);
  torch::manual_seed(0);
  try {
    if (table == "orders") {
      orders();
      return 0;
    }
    if (table == "gmm") {
      auto vp = std::make_shared<sbgm::VPSDE>();
      sbgm::GaussianMixture g(
          torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
          torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
          torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
      // What an exact sampler returns: the mixture perturbed to the last
      // time of the grids (t_min = 1e-3), then Tweedie's x0 there (each
      // component slightly narrower than the data's).
      const auto p = vp->at(vp->t_min());
      const sbgm::GaussianMixture at_end(
          g.weights(),
          g.means() * p.alpha,
          (g.stds() * p.alpha).square().add(p.sigma * p.sigma).sqrt());
      auto model = g.model(vp, sbgm::Prediction::Epsilon);
      const auto t_end = torch::full({1}, p.t, torch::kDouble);
      quality_table(
          model,
          *vp,
          [&](int64_t n, uint64_t seed) {
            auto x =
                at_end.sample(n, sbgm::make_generator(seed), torch::kDouble);
            auto eps = model(x, t_end.expand({n}));
            return ((x - p.sigma * eps) / p.alpha).to(torch::kFloat);
          },
          {10, 20, 50, 1000},
          [](const torch::Tensor& x) { return x; });
      return 0;
    }
    // The swiss-roll demo's default model.
    const auto kind = sbgm::data::Toy2d::SwissRoll;
    sbgm::DiscreteProcess process(sbgm::Schedule::sigmoid(200, 1e-4, 0.06));
    sbgm::MLP net(sbgm::MLPOptions(2).hidden(128).num_timesteps(200));
    sbgm::Model model(net, sbgm::Prediction::Epsilon);
    sbgm::data::Toy2dSampler data(
        sbgm::data::Toy2dSamplerOptions(kind).standardize(true));
    sbgm::FusedMLPStep fused(net);
    const auto lo =
        sbgm::LossOptions().sampling(sbgm::TimeSampling::Antithetic);
    sbgm::Trainer trainer(
        net,
        [&](int64_t) {
          auto x0 = data.sample(256);
          auto t = sbgm::sample_times(process, 256, lo, torch::kCPU);
          auto noise = torch::randn_like(x0);
          return fused(
              process.perturb(x0, t, noise), t.to(torch::kLong), noise);
        },
        sbgm::TrainerOptions(20000)
            .grad_clip(1.0)
            .ema_decay(0.999)
            .loss_fn_computes_grads(true)
            .progress(sbgm::ProgressMode::Off));
    trainer.run();
    trainer.ema()->copy_to(*net);
    net->eval();
    const auto standard = data.standardizer();
    quality_table(
        model,
        process,
        [&](int64_t n, uint64_t seed) {
          return sbgm::data::make_toy2d(kind, n, sbgm::make_generator(seed));
        },
        {10, 20, 50, 200},
        [&](const torch::Tensor& x) { return standard.invert(x); });
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbgm-quality: %s\n", e.what());
    return 1;
  }
}
