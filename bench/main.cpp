// sbgm-bench: times sbgm's hot paths, one workload per line:
//   sbgm-bench --workload swiss_train --threads 1 [--iters N] [--device cpu]
// prints
//   peer=sbgm workload=swiss_train threads=1 iters=N us_per_step=... flops=...
//   gflops=...
// with the median over iterations after a warm-up. bench/peer.py times the
// same workloads in Python PyTorch; bench/compare_pytorch.sh runs both.
//
// Workloads (the definitions are shared with bench/peer.py):
//   swiss_train   the small swiss-roll MLP (2-64-64-64-2, learned per-step
//   embeddings,
//                 T = 150), batch 128 from a fixed swiss roll of 10^4 points,
//                 antithetic steps, eps-loss, one Adam step with clipping at 1.
//   swiss_sample  DDPM ancestral sampling of 1,000 points with that MLP,
//                 150 steps; the time per step.
//   mnist_train   the MNIST demo's U-Net, batch 32 of 28x28, VE (sigma = 25)
//                 denoising score matching, one Adam step.
//   mnist_sample  Euler-Maruyama on the VE SDE for 64 images with that U-Net,
//                 the time per step.
//   swiss_sample_graph, mnist_sample_graph
//                 whole ddpm() / euler_maruyama() (100 steps) runs with
//                 CommonOptions::cuda_graph, capture included; on CPU the
//                 flag does nothing, so these time the eager runs there.

#include <sbgm/sbgm.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "workloads.h"

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  std::string workloads = "all";
  int threads = 1;
  int64_t iters = 0;
  std::string device_name = "cpu";
  CLI::App app{"sbgm-bench: time sbgm's training and sampling steps"};
  app.add_option(
      "--workload",
      workloads,
      "swiss_train, swiss_sample, mnist_train, mnist_sample, a comma "
      "separated list, or all");
  app.add_option("--threads", threads, "intra-op threads")
      ->check(CLI::PositiveNumber);
  int blas_threads = 1;
  app.add_option(
         "--blas-threads",
         blas_threads,
         "OpenBLAS's own threads (sbgm::set_num_threads; 1 by default)")
      ->check(CLI::PositiveNumber);
  app.add_option("--iters", iters, "timed iterations (0: per workload)");
  app.add_option("--device", device_name, "cpu or cuda");
  CLI11_PARSE(app, argc, argv);
  sbgm::tune_cpu_allocator();  // reuse freed tensor memory (see sbgm/perf.h)

  try {
    sbgm::set_num_threads(threads, blas_threads);
    const torch::Device device(device_name);
    TORCH_CHECK(
        !device.is_cuda() || torch::cuda::is_available(),
        "--device cuda but CUDA is not available");
    std::vector<std::string> names;
    if (workloads == "all") {
      names = sbgm::bench::workload_names();
    } else {
      size_t start = 0;
      while (start <= workloads.size()) {
        const size_t comma = workloads.find(',', start);
        names.push_back(workloads.substr(
            start,
            comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos)
          break;
        start = comma + 1;
      }
    }
    for (const auto& name : names) {
      sbgm::bench::Workload w = sbgm::bench::make_workload(name, device);
      const int64_t n = iters > 0 ? iters : w.default_iters;
      for (int64_t i = 0; i < std::max<int64_t>(10, n / 10); ++i)
        w.step();
      w.sync();
      std::vector<double> times;
      times.reserve(n);
      for (int64_t i = 0; i < n; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        w.step();
        w.sync();
        times.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                .count());
      }
      const double us = median(times) * 1e6 / w.steps_per_call;
      std::printf(
          "peer=sbgm workload=%s threads=%d iters=%lld device=%s "
          "us_per_step=%.1f flops=%lld gflops=%.3f\n",
          name.c_str(),
          threads,
          static_cast<long long>(n),
          device.str().c_str(),
          us,
          static_cast<long long>(w.flops),
          w.flops / us / 1e3);
      std::fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sbgm-bench: %s\n", e.what());
    return 1;
  }
}
