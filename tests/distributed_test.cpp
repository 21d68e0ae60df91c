// Data-parallel process groups: the launch environment, and groups of two
// processes on loopback (the helper sbgm_dist_worker, spawned here by
// posix_spawn with RANK, WORLD_SIZE, MASTER_ADDR and a free MASTER_PORT).

#include "sbgm/distributed.h"

#include <signal.h>

#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "dist_support.h"
#include "sbgm/data/shard_sampler.h"
#include "support.h"

namespace sbgm {
namespace {

using Env = std::map<std::string, std::string>;

// ---- the launch environment ---------------------------------------------

TEST(LaunchInfo, NoLauncherIsOneProcess) {
  auto info = dist::launch_info(Env{{"HOME", "/root"}});
  EXPECT_EQ(info.launcher, "none");
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.world_size, 1);
}

TEST(LaunchInfo, Torchrun) {
  auto info = dist::launch_info(
      Env{{"RANK", "3"},
          {"WORLD_SIZE", "4"},
          {"LOCAL_RANK", "1"},
          {"MASTER_ADDR", "node7"},
          {"MASTER_PORT", "29512"},
          {"TORCHELASTIC_USE_AGENT_STORE", "True"},
          {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_EQ(info.launcher, "torchrun");
  EXPECT_EQ(info.rank, 3);
  EXPECT_EQ(info.world_size, 4);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.master_addr, "node7");
  EXPECT_EQ(info.master_port, 29512);
  EXPECT_TRUE(info.agent_store);
  EXPECT_EQ(info.restart_count, 2);
}

TEST(LaunchInfo, TorchrunDefaults) {
  auto info = dist::launch_info(Env{{"RANK", "0"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(info.master_addr, "127.0.0.1");
  EXPECT_EQ(info.master_port, 29500);
  EXPECT_EQ(info.local_rank, 0);
  EXPECT_FALSE(info.agent_store);
}

TEST(LaunchInfo, Slurm) {
  auto info = dist::launch_info(
      Env{{"SLURM_PROCID", "5"},
          {"SLURM_NTASKS", "8"},
          {"SLURM_LOCALID", "1"},
          {"MASTER_ADDR", "n01"}});
  EXPECT_EQ(info.launcher, "slurm");
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.world_size, 8);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.master_addr, "n01");
}

TEST(LaunchInfo, TorchrunVariablesWinOverSlurm) {
  auto info = dist::launch_info(
      Env{{"RANK", "1"},
          {"WORLD_SIZE", "2"},
          {"SLURM_PROCID", "0"},
          {"SLURM_NTASKS", "1"}});
  EXPECT_EQ(info.launcher, "torchrun");
  EXPECT_EQ(info.rank, 1);
}

TEST(LaunchInfo, BadValuesAreNamed) {
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"RANK", "0"}, {"WORLD_SIZE", "two"}}),
      "WORLD_SIZE='two' is not an integer");
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"RANK", "1x"}, {"WORLD_SIZE", "2"}}),
      "RANK='1x' is not an integer");
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"RANK", "2"}, {"WORLD_SIZE", "2"}}),
      "the rank must lie in [0, 2), got 2");
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"RANK", "-1"}, {"WORLD_SIZE", "2"}}),
      "the rank must lie in [0, 2), got -1");
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"RANK", "0"}, {"WORLD_SIZE", "0"}}),
      "the world size must be >= 1, got 0");
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"RANK", "0"}}),
      "RANK is set but WORLD_SIZE is not");
  EXPECT_THROW_MSG(
      dist::launch_info(
          Env{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}),
      "MASTER_PORT must lie in [1, 65535], got 70000");
  EXPECT_THROW_MSG(
      dist::launch_info(
          Env{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "5"}}),
      "the local rank must lie in [0, 2), got 5");
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}),
      "MASTER_ADDR must name the host of rank 0");
  EXPECT_THROW_MSG(
      dist::launch_info(Env{{"SLURM_PROCID", "0"}}),
      "SLURM_PROCID is set but SLURM_NTASKS is not");
}

TEST(ProcessGroupOptions, BadOptionsAreNamed) {
  dist::LaunchInfo info;
  EXPECT_THROW_MSG(
      dist::ProcessGroup::create(
          info,
          dist::ProcessGroupOptions().timeout(std::chrono::milliseconds(0))),
      "the timeout must be > 0 ms, got 0");
  EXPECT_THROW_MSG(
      dist::ProcessGroup::create(
          info,
          dist::ProcessGroupOptions().init_timeout(
              std::chrono::milliseconds(-1))),
      "init_timeout must be > 0 ms, got -1");
  if (!dist::nccl_available()) {
    EXPECT_THROW_MSG(
        dist::ProcessGroup::create(
            info, dist::ProcessGroupOptions().backend(dist::Backend::NCCL)),
        "the NCCL backend was asked for but this build has none");
  }
  info.rank = 3;
  EXPECT_THROW_MSG(
      dist::ProcessGroup::create(info), "rank 3 does not fit world size 1");
}

TEST(ProcessGroup, OneProcessGroupWorksAlone) {
  dist::LaunchInfo info;
  info.master_port = test::free_port();
  auto g = dist::ProcessGroup::create(
      info, dist::ProcessGroupOptions().timeout(std::chrono::seconds(5)));
  EXPECT_TRUE(g->is_main());
  EXPECT_EQ(g->backend_name(), "gloo");
  auto x = torch::arange(4, torch::kDouble);
  g->allreduce_mean_(x);
  EXPECT_TRUE(test::all_close(x, torch::arange(4, torch::kDouble)));
  g->barrier();
  g->shutdown();
  EXPECT_THROW_MSG(g->barrier(), "on a process group that was shut down");
}

TEST(ProcessGroup, EnvWithoutLauncherGivesNoGroup) {
  // ctest runs without RANK, WORLD_SIZE or SLURM_PROCID set.
  if (std::getenv("RANK") || std::getenv("WORLD_SIZE") ||
      std::getenv("SLURM_PROCID")) {
    GTEST_SKIP() << "a launcher's variables are set in this environment";
  }
  EXPECT_EQ(dist::init_from_env(), nullptr);
}

// ---- two processes ------------------------------------------------------

class TwoRanks : public ::testing::Test {
 protected:
  test::TempDir dir;
};

TEST_F(TwoRanks, CollectivesAgree) {
  auto runs = test::run_ranks(2, {"collectives", dir.file("out")});
  for (auto& r : runs) {
    ASSERT_EQ(r.exit_code, 0) << r.log;
  }
  for (int rank = 0; rank < 2; ++rank) {
    std::vector<torch::Tensor> t;
    torch::load(t, dir.file("out.rank" + std::to_string(rank) + ".pt"));
    ASSERT_EQ(t.size(), 7u);
    EXPECT_TRUE(test::all_close(t[0], torch::full({5}, 3.0, torch::kDouble)));
    // mean of arange * 1 and arange * 2
    EXPECT_TRUE(test::all_close(t[1], torch::arange(6, torch::kFloat) * 1.5));
    // broadcast from rank 1
    EXPECT_TRUE(test::all_close(t[2], torch::full({2, 3}, 1.0)));
    EXPECT_TRUE(test::all_close(t[3], torch::full({4}, 10.0)));
    EXPECT_TRUE(test::all_close(t[4], torch::full({3}, 0.5)));
    EXPECT_TRUE(test::all_close(t[5], torch::full({2, 2}, 1.0)));
    EXPECT_TRUE(test::all_close(t[6], torch::full({1}, 2.5)));
  }
}

TEST_F(TwoRanks, SlurmVariablesFormTheGroup) {
  // As srun starts tasks: SLURM_PROCID / SLURM_NTASKS, MASTER_ADDR given.
  auto runs = test::run_ranks(
      2, {"collectives", dir.file("out")}, 60, 30, /*slurm=*/true);
  for (auto& r : runs) {
    ASSERT_EQ(r.exit_code, 0) << r.log;
  }
  std::vector<torch::Tensor> t;
  torch::load(t, dir.file("out.rank1.pt"));
  EXPECT_TRUE(test::all_close(t[0], torch::full({5}, 3.0, torch::kDouble)));
}

TEST_F(TwoRanks, KilledRankEndsThePeerWithAnError) {
  // Rank 1 dies by SIGKILL before step 3; rank 0, waiting in the all-reduce
  // of step 3, must exit 1 and say where (timeout 5 s; the guard in
  // run_ranks kills both after 60 s and fails the test).
  auto runs = test::run_ranks(2, {"kill", "1", "3", "--timeout-ms", "5000"});
  EXPECT_TRUE(runs[1].signaled && runs[1].signal == SIGKILL) << runs[1].log;
  EXPECT_EQ(runs[0].exit_code, 1) << runs[0].log;
  EXPECT_NE(
      runs[0].log.find("rank 0 of 2: allreduce of step 3 failed"),
      std::string::npos)
      << runs[0].log;
  EXPECT_NE(
      runs[0].log.find("no rank reported an error first"), std::string::npos)
      << runs[0].log;
  std::cout << "rank 0 exited " << runs[0].seconds - runs[1].seconds
            << " s after rank 1 was killed\n";
}

TEST_F(TwoRanks, KilledRankZeroEndsThePeerToo) {
  // Rank 0 also serves the store; rank 1 must still fail cleanly.
  auto runs = test::run_ranks(2, {"kill", "0", "3", "--timeout-ms", "5000"});
  EXPECT_TRUE(runs[0].signaled && runs[0].signal == SIGKILL) << runs[0].log;
  EXPECT_EQ(runs[1].exit_code, 1) << runs[1].log;
  EXPECT_NE(
      runs[1].log.find("rank 1 of 2: allreduce of step 3 failed"),
      std::string::npos)
      << runs[1].log;
}

TEST_F(TwoRanks, ThrowingRankIsNamedByThePeer) {
  auto runs = test::run_ranks(2, {"throw", "1", "2", "--timeout-ms", "5000"});
  EXPECT_EQ(runs[1].exit_code, 1) << runs[1].log;
  EXPECT_EQ(runs[0].exit_code, 1) << runs[0].log;
  EXPECT_NE(
      runs[0].log.find("rank 0 of 2: allreduce of step 2 failed"),
      std::string::npos)
      << runs[0].log;
  EXPECT_NE(
      runs[0].log.find("rank 1 reported: the loss closure failed at step 2"),
      std::string::npos)
      << runs[0].log;
}

TEST_F(TwoRanks, HungRankTimesOut) {
  // Rank 1 sleeps 60 s; rank 0 gives up after its 2 s timeout. The guard
  // then kills rank 1 (it is expected to be still asleep).
  auto runs = test::run_ranks(
      2,
      {"hang", "1", "1", "--timeout-ms", "2000"},
      /*guard_s=*/20,
      /*grace_s=*/1);
  EXPECT_EQ(runs[0].exit_code, 1) << runs[0].log;
  EXPECT_NE(
      runs[0].log.find("rank 0 of 2: allreduce of step 1 failed"),
      std::string::npos)
      << runs[0].log;
  EXPECT_NE(runs[0].log.find("2000 ms timeout"), std::string::npos)
      << runs[0].log;
}

// ---- the trainer on two ranks ------------------------------------------

// [params, EMA, (first step, last step)] that `train` saved for a rank.
std::vector<torch::Tensor> trained(
    const test::TempDir& dir, const std::string& name, int rank) {
  std::vector<torch::Tensor> t;
  torch::load(t, dir.file(name + ".rank" + std::to_string(rank) + ".pt"));
  return t;
}

void expect_ok(const std::vector<test::RankRun>& runs) {
  for (size_t r = 0; r < runs.size(); ++r) {
    EXPECT_EQ(runs[r].exit_code, 0) << "rank " << r << ":\n" << runs[r].log;
  }
}

TEST_F(TwoRanks, TrainerKeepsTheRanksIdentical) {
  // Each rank its own noise stream, its own shard, different initial
  // weights before the broadcast: after 8 steps both hold the same weights
  // and EMA, bit for bit.
  auto runs = test::run_ranks(2, {"train", dir.file("a"), "--noise", "rank"});
  expect_ok(runs);
  auto r0 = trained(dir, "a", 0), r1 = trained(dir, "a", 1);
  EXPECT_TRUE(torch::equal(r0[0], r1[0]))
      << "max diff " << test::max_abs_diff(r0[0], r1[0]);
  EXPECT_TRUE(torch::equal(r0[1], r1[1]))
      << "max diff " << test::max_abs_diff(r0[1], r1[1]);
  EXPECT_EQ(r0[2][1].item<int64_t>(), 8);
  // It trained: the weights moved away from the EMA's start.
  EXPECT_GT(test::max_abs_diff(r0[0], r0[1]), 1e-4);
}

// Two ranks at batch 16 against one process at batch 32 on the same data,
// noise and initial weights (float64): the same weights to 1e-10.
void expect_equivalent(const test::TempDir& dir, const std::string& opt) {
  auto two = test::run_ranks(
      2, {"train", dir.file("two"), "--batch", "16", "--optimizer", opt});
  expect_ok(two);
  auto one = test::run_ranks(
      1, {"train", dir.file("one"), "--batch", "32", "--optimizer", opt});
  expect_ok(one);
  auto a = trained(dir, "two", 0), b = trained(dir, "one", 0);
  const double dp = test::max_abs_diff(a[0], b[0]);
  const double de = test::max_abs_diff(a[1], b[1]);
  std::cout << opt << ": max |2 ranks - 1 process|: weights " << dp << ", EMA "
            << de << "\n";
  EXPECT_LT(dp, 1e-10);
  EXPECT_LT(de, 1e-10);
  // Not trivially equal: the run moved the weights.
  EXPECT_GT(test::max_abs_diff(a[0], a[1]), 1e-4);
}

TEST_F(TwoRanks, TwoRanksEqualOneProcessAtTwiceTheBatchFlatAdam) {
  expect_equivalent(dir, "flat");
}

TEST_F(TwoRanks, TwoRanksEqualOneProcessAtTwiceTheBatchBucketedAdam) {
  expect_equivalent(dir, "adam");
}

TEST_F(TwoRanks, ResumeAtWorldSizeTwoContinuesBitForBit) {
  // 8 steps straight, against 4 steps, a checkpoint, and a resume to 8;
  // each rank's own noise generator, default generator and sampler position
  // come back from the checkpoint rank 0 wrote.
  auto straight = test::run_ranks(
      2, {"train", dir.file("s"), "--noise", "rank", "--steps", "8"});
  expect_ok(straight);
  const std::string ckpt = dir.file("ckpt.pt");
  auto half = test::run_ranks(
      2,
      {"train",
       dir.file("h"),
       "--noise",
       "rank",
       "--steps",
       "4",
       "--ckpt",
       ckpt});
  expect_ok(half);
  auto resumed = test::run_ranks(
      2,
      {"train",
       dir.file("r"),
       "--noise",
       "rank",
       "--steps",
       "8",
       "--ckpt",
       ckpt});
  expect_ok(resumed);
  for (int rank = 0; rank < 2; ++rank) {
    auto s = trained(dir, "s", rank), r = trained(dir, "r", rank);
    EXPECT_EQ(r[2][0].item<int64_t>(), 4) << "rank " << rank;
    EXPECT_TRUE(torch::equal(s[0], r[0]))
        << "rank " << rank << " max diff " << test::max_abs_diff(s[0], r[0]);
    EXPECT_TRUE(torch::equal(s[1], r[1]))
        << "rank " << rank << " max diff " << test::max_abs_diff(s[1], r[1]);
  }
}

TEST_F(TwoRanks, KilledRankStopsTheTrainerWithAnError) {
  // Rank 1 dies in step 3's loss; rank 0, in the gradient all-reduce of
  // step 3, must exit 1 naming itself and the operation.
  auto runs = test::run_ranks(
      2, {"train", dir.file("k"), "--kill-at", "3", "--timeout-ms", "5000"});
  EXPECT_TRUE(runs[1].signaled && runs[1].signal == SIGKILL) << runs[1].log;
  EXPECT_EQ(runs[0].exit_code, 1) << runs[0].log;
  EXPECT_NE(
      runs[0].log.find("rank 0 of 2: the gradient all-reduce of step 3 failed"),
      std::string::npos)
      << runs[0].log;
  std::cout << "rank 0 exited " << runs[0].seconds - runs[1].seconds
            << " s after rank 1 was killed\n";
}

// ---- the shard sampler --------------------------------------------------

TEST(ShardSampler, ShardsAreDisjointAndCoverTheEpoch) {
  const int64_t n = 103, w = 3, b = 4;
  std::vector<torch::Tensor> all;
  for (int64_t r = 0; r < w; ++r) {
    data::ShardSampler s(
        data::ShardSamplerOptions(n, b).rank(r).world_size(w).seed(9));
    EXPECT_EQ(s.batches_per_epoch(), (n / w) / b);
    all.push_back(s.shard(0));
  }
  auto cat = torch::cat(all);
  EXPECT_EQ(cat.numel(), (n / w) * w);
  EXPECT_EQ(std::get<0>(torch::_unique(cat)).numel(), cat.numel());
  // Another epoch, another order.
  data::ShardSampler s0(data::ShardSamplerOptions(n, b).world_size(w).seed(9));
  EXPECT_FALSE(torch::equal(s0.shard(0), s0.shard(1)));
}

TEST(ShardSampler, RanksTogetherDrawTheBatchOfOneProcess) {
  const int64_t n = 64, b = 4;
  data::ShardSampler one(data::ShardSamplerOptions(n, 2 * b).seed(5));
  data::ShardSampler r0(
      data::ShardSamplerOptions(n, b).world_size(2).rank(0).seed(5));
  data::ShardSampler r1(
      data::ShardSamplerOptions(n, b).world_size(2).rank(1).seed(5));
  for (int step = 0; step < 20; ++step) {  // across epochs (8 per epoch)
    auto a = std::get<0>(torch::sort(one.next()));
    auto c = std::get<0>(torch::sort(torch::cat({r0.next(), r1.next()})));
    ASSERT_TRUE(torch::equal(a, c)) << "step " << step;
  }
  EXPECT_EQ(one.epoch(), 2);
}

TEST(ShardSampler, StateResumesTheSequence) {
  data::ShardSampler a(
      data::ShardSamplerOptions(50, 3).world_size(2).rank(1).seed(2));
  for (int i = 0; i < 11; ++i) {
    a.next();
  }
  data::ShardSampler b(
      data::ShardSamplerOptions(50, 3).world_size(2).rank(1).seed(2));
  b.load_state(a.state());
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(torch::equal(a.next(), b.next())) << i;
  }
  EXPECT_THROW_MSG(
      b.load_state(torch::tensor({0, 99}, torch::kLong)),
      "does not fit 8 batches per epoch");
  EXPECT_THROW_MSG(
      b.load_state(torch::tensor({0.0, 1.0})),
      "a state is an int64 tensor of 2");
}

TEST(ShardSampler, BadOptionsAreNamed) {
  EXPECT_THROW_MSG(
      data::ShardSampler(data::ShardSamplerOptions(10, 2).world_size(0)),
      "world_size must be >= 1, got 0");
  EXPECT_THROW_MSG(
      data::ShardSampler(
          data::ShardSamplerOptions(10, 2).world_size(2).rank(2)),
      "rank must lie in [0, 2), got 2");
  EXPECT_THROW_MSG(
      data::ShardSampler(data::ShardSamplerOptions(10, 0)),
      "batch must be >= 1, got 0");
  EXPECT_THROW_MSG(
      data::ShardSampler(data::ShardSamplerOptions(10, 6).world_size(2)),
      "a data set of 10 items cannot give 2 ranks a batch of 6 each");
}

}  // namespace
}  // namespace sbgm
