// One rank of the data-parallel tests (tests/distributed_test.cpp spawns it
// with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set). Modes:
//   collectives OUT        all-reduce, broadcast, bucketed mean, barrier;
//                          saves the results to OUT.rank<r>.pt
//   kill VICTIM STEP       all-reduces every step; rank VICTIM kills itself
//                          (SIGKILL) before STEP
//   throw VICTIM STEP      rank VICTIM throws at STEP, reports it, exits 1
//   hang VICTIM STEP       rank VICTIM sleeps 60 s at STEP
//   train OUT              trains a small float64 MLP on 256 fixed 2-D
//                          points with sbgm::Trainer (data-parallel when
//                          WORLD_SIZE > 1); saves [params, EMA, (first
//                          step, last step)] to OUT.rank<r>.pt. Options:
//     --steps N --batch B  (per rank; default 8 and 16)
//     --noise keyed|rank   keyed: each sample's noise and time come from a
//                          table of the step shared by all ranks (so any
//                          world size sees the same numbers); rank: from a
//                          generator seeded 7 + rank, registered with
//                          add_generator, and times from the default
//                          generator seeded 11 + rank (default: keyed)
//     --optimizer flat|adam  FlatAdam (one flat all-reduce) or torch Adam
//                          (bucketed); default flat
//     --ckpt PATH          checkpoint (resumed when present)
//     --kill-at K          rank 1 kills itself (SIGKILL) in step K's loss
// Options after the mode: --timeout-ms N, the collectives' timeout (default
// 30000; the fault tests set a few seconds).
// Exits 0 on success, 1 with "rank R error: ..." on stderr on a failure.

#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "sbgm/data/shard_sampler.h"
#include "sbgm/distributed.h"
#include "sbgm/losses.h"
#include "sbgm/model.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/random.h"
#include "sbgm/schedule.h"
#include "sbgm/train/trainer.h"

namespace {

namespace dist = sbgm::dist;

int collectives(dist::ProcessGroup& g, const std::string& out) {
  const double r = static_cast<double>(g.rank());
  const double w = static_cast<double>(g.world_size());
  auto sum = torch::full({5}, r + 1, torch::kDouble);
  g.allreduce_sum_(sum, "test sum");
  auto mean = torch::arange(6, torch::kFloat) * (r + 1);
  g.allreduce_mean_(mean, "test mean");
  // Rank-dependent tensors of two dtypes, broadcast from the last rank.
  auto b1 = torch::full({2, 3}, r, torch::kDouble);
  auto b2 = torch::full({4}, r * 10, torch::kFloat);
  g.broadcast_({b1, b2}, g.world_size() - 1, "test broadcast");
  // Buckets of at most 16 bytes: several all-reduces.
  std::vector<torch::Tensor> parts{
      torch::full({3}, r, torch::kDouble),
      torch::full({2, 2}, 2 * r, torch::kDouble),
      torch::full({1}, r + w, torch::kDouble)};
  g.allreduce_mean_bucketed_(parts, /*bucket_bytes=*/16, "test buckets");
  g.barrier("test barrier");
  torch::save(
      std::vector<torch::Tensor>{
          sum, mean, b1, b2, parts[0], parts[1], parts[2]},
      out + ".rank" + std::to_string(g.rank()) + ".pt");
  g.shutdown();
  return 0;
}

int faults(
    dist::ProcessGroup& g,
    const std::string& mode,
    int64_t victim,
    int64_t at) {
  auto x = torch::ones({1000}, torch::kFloat);
  for (int64_t step = 0; step < 1000; ++step) {
    if (g.rank() == victim && step == at) {
      if (mode == "kill") {
        std::raise(SIGKILL);
      } else if (mode == "throw") {
        TORCH_CHECK(false, "the loss closure failed at step ", step);
      } else if (mode == "hang") {
        std::this_thread::sleep_for(std::chrono::seconds(60));
      }
    }
    g.allreduce_sum_(x, "allreduce of step " + std::to_string(step));
    x.fill_(1.0);
  }
  g.shutdown();
  return 0;
}

std::string option(
    const std::vector<std::string>& args,
    const std::string& name,
    const std::string& fallback) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == name) {
      return args[i + 1];
    }
  }
  return fallback;
}

int train(
    const std::shared_ptr<dist::ProcessGroup>& group,
    const std::vector<std::string>& args) {
  const int64_t rank = group ? group->rank() : 0;
  const int64_t world = group ? group->world_size() : 1;
  const int64_t steps = std::stoll(option(args, "--steps", "8"));
  const int64_t batch = std::stoll(option(args, "--batch", "16"));
  const std::string noise = option(args, "--noise", "keyed");
  const std::string optimizer = option(args, "--optimizer", "flat");
  const int64_t kill_at = std::stoll(option(args, "--kill-at", "-1"));
  const int64_t n = 256, T = 20;
  torch::set_default_dtype(caffe2::TypeMeta::Make<double>());
  // Different initial weights on each rank: the trainer broadcasts rank 0's.
  torch::manual_seed(11 + static_cast<uint64_t>(rank));
  sbgm::MLP net(sbgm::MLPOptions(2).hidden(32).depth(2).num_timesteps(T));
  net->to(torch::kDouble);
  sbgm::Model model(net, sbgm::Prediction::Epsilon);
  sbgm::DiscreteProcess process(sbgm::Schedule::cosine(T));
  auto data = torch::randn({n, 2}, sbgm::make_generator(123)) *
              torch::tensor({1.0, 0.5});
  sbgm::data::ShardSampler sampler(sbgm::data::ShardSamplerOptions(n, batch)
                                       .rank(rank)
                                       .world_size(world)
                                       .seed(5));
  auto noise_gen = sbgm::make_generator(7 + static_cast<uint64_t>(rank));
  int64_t calls = 0;
  auto loss = [&](int64_t step) {
    ++calls;
    if (step == kill_at && rank == 1) {
      std::raise(SIGKILL);
    }
    auto idx = sampler.next();
    auto x0 = data.index_select(0, idx);
    torch::Tensor z, t;
    if (noise == "keyed") {
      auto gen = sbgm::make_generator(1000 + static_cast<uint64_t>(step));
      z = torch::randn({n, 2}, gen).index_select(0, idx);
      t = torch::randint(0, T, {n}, gen, torch::kLong).index_select(0, idx);
    } else {
      z = torch::randn({batch, 2}, noise_gen);
      t = torch::randint(0, T, {batch}, torch::kLong);
    }
    return sbgm::diffusion_loss(model, process, x0, t, z);
  };
  std::shared_ptr<torch::optim::Optimizer> opt;
  if (optimizer == "adam") {
    opt = std::make_shared<torch::optim::Adam>(
        net->parameters(), torch::optim::AdamOptions(1e-2));
  }
  sbgm::Trainer trainer(
      net,
      loss,
      sbgm::TrainerOptions(steps)
          .lr(1e-2)
          .grad_clip(0.5)
          .ema_decay(0.9)
          .log_every(3)
          .progress(sbgm::ProgressMode::Off)
          .checkpoint_path(option(args, "--ckpt", ""))
          .process_group(group),
      opt);
  trainer.add_state(
      "sampler",
      [&] { return sampler.state(); },
      [&](const torch::Tensor& s) { sampler.load_state(s); });
  if (noise == "rank") {
    trainer.add_generator("noise", noise_gen);
  }
  trainer.on_log([&](const sbgm::TrainLogEntry& e) {
    std::cout << "step " << e.step << " loss " << e.loss << std::endl;
  });
  trainer.run();
  const int64_t resumed_at = trainer.step_count() - calls;  // 0 unless resumed
  std::vector<torch::Tensor> ps, es;
  for (auto& p : net->parameters()) {
    ps.push_back(p.detach().reshape({-1}));
  }
  for (auto& e : trainer.ema()->shadow()) {
    es.push_back(e.reshape({-1}));
  }
  torch::save(
      std::vector<torch::Tensor>{
          torch::cat(ps),
          torch::cat(es),
          torch::tensor({resumed_at, trainer.step_count()}, torch::kLong)},
      args.at(1) + ".rank" + std::to_string(rank) + ".pt");
  if (group) {
    group->shutdown();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << "usage: sbgm_dist_worker MODE ...\n";
    return 2;
  }
  int64_t timeout_ms = 30000;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--timeout-ms") {
      timeout_ms = std::stoll(args[i + 1]);
    }
  }
  torch::set_num_threads(1);
  std::shared_ptr<dist::ProcessGroup> group;
  try {
    const std::string& mode = args[0];
    const auto info = dist::launch_info();
    if (mode != "train" || info.world_size > 1) {
      group = dist::ProcessGroup::create(
          info,
          dist::ProcessGroupOptions()
              .timeout(std::chrono::milliseconds(timeout_ms))
              // Starting may take long on a loaded machine; only the
              // collectives' timeout is under test.
              .init_timeout(std::chrono::seconds(120)));
    }
    if (mode == "train") {
      return train(group, args);
    }
    if (mode == "collectives") {
      return collectives(*group, args.at(1));
    }
    if (mode == "kill" || mode == "throw" || mode == "hang") {
      return faults(
          *group, mode, std::stoll(args.at(1)), std::stoll(args.at(2)));
    }
    std::cerr << "unknown mode " << mode << "\n";
    return 2;
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    if (group) {
      group->report_failure(msg);
    }
    std::cerr << "rank " << (group ? group->rank() : -1) << " error: " << msg
              << std::endl;
    return 1;
  }
}
