// sbgm-ddp-bench: MNIST U-Net training throughput (images per second) of
// sbgm::Trainer, data-parallel on c10d/Gloo when the environment says
// WORLD_SIZE > 1 (torchrun, srun or RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT
// by hand), a single process otherwise. The step is bench/peer.py's
// mnist_train (the U-Net with the VE sigma^t std, score matching on 32
// fixed images, Adam with clipping at 1): FlatAdam with fused clipping and
// one all-reduce of the flat gradient buffer per step.
//
//   sbgm-ddp-bench [--steps 60] [--warmup 10] [--batch 32] [--threads 1]
//
// Rank 0 prints one line: peer=sbgm procs=P batch=B steps=N seconds=S
// images_per_s=I (I = P * B * N / S over the timed steps).

#include <sbgm/sbgm.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

int64_t arg(int argc, char** argv, const std::string& name, int64_t def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (name == argv[i]) {
      return std::stoll(argv[i + 1]);
    }
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t steps = arg(argc, argv, "--steps", 60);
  const int64_t warmup = arg(argc, argv, "--warmup", 10);
  const int64_t batch = arg(argc, argv, "--batch", 32);
  sbgm::set_num_threads(static_cast<int>(arg(argc, argv, "--threads", 1)));
  sbgm::tune_cpu_allocator();
  try {
    auto group = sbgm::dist::init_from_env();
    const int64_t rank = group ? group->rank() : 0;
    const int64_t procs = group ? group->world_size() : 1;
    torch::manual_seed(0);  // the weights: rank 0's are broadcast
    auto sde = std::make_shared<sbgm::VESDE>(25.0);
    sbgm::UNet net(sbgm::UNetOptions(1).marginal_std(
        [sde](const torch::Tensor& t) { return sde->sigma(t); }));
    sbgm::Model model(net, sbgm::Prediction::Score);
    torch::manual_seed(1 + static_cast<uint64_t>(rank));  // own noise
    auto images = torch::rand({batch, 1, 28, 28});
    using Clock = std::chrono::steady_clock;
    Clock::time_point t0;
    sbgm::Trainer trainer(
        net,
        [&](int64_t step) {
          if (step == warmup) {
            t0 = Clock::now();
          }
          return sbgm::dsm_loss(model, *sde, images);
        },
        sbgm::TrainerOptions(warmup + steps)
            .lr(1e-3)
            .grad_clip(1.0)
            .ema_decay(0)
            .log_every(warmup + steps)
            .progress(sbgm::ProgressMode::Off)
            .process_group(group));
    trainer.run();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rank == 0) {
      std::printf(
          "peer=sbgm procs=%lld batch=%lld steps=%lld seconds=%.3f "
          "images_per_s=%.1f\n",
          static_cast<long long>(procs),
          static_cast<long long>(batch),
          static_cast<long long>(steps),
          s,
          static_cast<double>(procs * batch * steps) / s);
    }
    if (group) {
      // What overlapping the all-reduce with the backward pass could win at
      // most: the time of the step's one all-reduce, alone.
      int64_t numel = 0;
      for (const auto& p : net->parameters()) {
        numel += p.numel();
      }
      auto buf = torch::randn({numel});
      for (int i = 0; i < 3; ++i) {
        group->allreduce_sum_(buf);
      }
      const auto a0 = Clock::now();
      const int reps = 20;
      for (int i = 0; i < reps; ++i) {
        group->allreduce_sum_(buf);
      }
      const double ms =
          std::chrono::duration<double, std::milli>(Clock::now() - a0).count() /
          reps;
      if (rank == 0) {
        std::printf(
            "peer=sbgm allreduce_floats=%lld allreduce_ms=%.2f "
            "step_ms=%.1f\n",
            static_cast<long long>(numel),
            ms,
            1e3 * s / static_cast<double>(steps));
      }
      group->shutdown();
    }
    return 0;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what_without_backtrace());
    return 1;
  }
}
