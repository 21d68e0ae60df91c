// sbgm-schedules: the noise processes at work.
//
// For each DDPM schedule it prints alpha_bar and the signal-to-noise ratio
// at a few steps; then, for every process, alpha, sigma and lambda at a few
// times with the empirical moments of a perturbed point, and the first
// times of a few grids. A small tour of what the library computes.

#include <sbgm/sbgm.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

int main() {
  torch::manual_seed(0);
  std::printf("sbgm %s: schedules, processes and grids\n\n", sbgm::kVersion);

  for (const auto& s :
       {sbgm::Schedule::linear(1000),
        sbgm::Schedule::cosine(1000),
        sbgm::Schedule::sigmoid(150, 1e-5, 5e-3)}) {
    const int64_t T = s.num_timesteps();
    std::printf(
        "%s, T = %lld\n  %8s %12s %12s\n",
        sbgm::to_string(s.kind()).c_str(),
        static_cast<long long>(T),
        "t",
        "alpha_bar",
        "SNR");
    for (int64_t t : {int64_t{0}, T / 4, T / 2, 3 * T / 4, T - 1}) {
      const double ab = s.alpha_bar(t);
      std::printf(
          "  %8lld %12.6g %12.6g\n",
          static_cast<long long>(t),
          ab,
          ab / (1 - ab));
    }
    std::printf("  reaches N(0, I): %s\n\n", s.reaches_prior() ? "yes" : "NO");
  }

  const std::vector<std::shared_ptr<sbgm::NoiseProcess>> processes = {
      std::make_shared<sbgm::VPSDE>(),
      std::make_shared<sbgm::SubVPSDE>(),
      std::make_shared<sbgm::VESDE>(25.0),
      std::make_shared<sbgm::GeometricVESDE>(),
      std::make_shared<sbgm::EDMProcess>(),
      std::make_shared<sbgm::DiscreteProcess>(sbgm::Schedule::cosine(1000))};
  const int64_t n = 200000;
  auto x0 = torch::full({n, 1}, 2.0, torch::kDouble);
  for (const auto& p : processes) {
    std::printf(
        "%s\n  %10s %10s %10s %10s %10s %10s\n",
        p->describe().c_str(),
        "t",
        "alpha",
        "sigma",
        "lambda",
        "mean",
        "std");
    for (double u : {0.1, 0.5, 1.0}) {
      const double t = p->t_min() + u * (p->t_max() - p->t_min());
      auto xt = p->perturb(
          x0, torch::full({n}, t, torch::kDouble), torch::randn_like(x0));
      std::printf(
          "  %10.4g %10.4g %10.4g %10.4g %10.4f %10.4f\n",
          t,
          p->alpha(t),
          p->sigma(t),
          p->lambda(t),
          xt.mean().item<double>() / 2,
          xt.std().item<double>());
    }
    for (const char* grid : {"default", "karras", "logsnr"}) {
      auto g = sbgm::grids::from_name(grid, *p, 5);
      std::printf("  %-8s", grid);
      for (double t : g.times()) {
        std::printf(" %9.4g", t);
      }
      std::printf("\n");
    }
    std::printf("\n");
  }
  return 0;
}
