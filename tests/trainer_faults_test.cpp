// Faults during training: a kill in the middle of a checkpoint write, a full
// disk, an unwritable directory, a non-finite loss at a given step, SIGINT
// and SIGTERM; and exact resume with generators of the caller's own.

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "sbgm/losses.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/random.h"
#include "sbgm/schedule.h"
#include "sbgm/train/checkpoint.h"
#include "sbgm/train/trainer.h"
#include "support.h"

namespace sbgm {
namespace {

namespace fs = std::filesystem;

// A 2-D toy loss whose data and noise come from a generator of its own.
struct OwnGenToy {
  explicit OwnGenToy(int64_t hidden = 16, int64_t depth = 2)
      : net(MLP(MLPOptions(2).hidden(hidden).depth(depth).num_timesteps(20))),
        model(net, Prediction::Epsilon),
        process(Schedule::linear(20, 1e-2, 0.5)),
        gen(make_generator(5)) {}
  MLP net;
  Model model;
  DiscreteProcess process;
  at::Generator gen;
  LossFn loss() {
    return [this](int64_t) {
      auto x0 = torch::randn({32, 2}, gen) * 0.5 + 1.0;
      auto t = torch::randint(0, 20, {32}, gen);
      auto z = torch::randn({32, 2}, gen);
      return diffusion_loss(model, process, x0, t, z);
    };
  }
};

bool same_params(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.parameters(), pb = b.parameters();
  if (pa.size() != pb.size()) {
    return false;
  }
  for (size_t i = 0; i < pa.size(); ++i) {
    if (!torch::equal(pa[i], pb[i])) {
      return false;
    }
  }
  return true;
}

TrainerOptions opts(int64_t steps) {
  return TrainerOptions(steps).lr(2e-3).log_every(5).progress(
      ProgressMode::Off);
}

class TrainerFaults : public test::SeededTest {
 protected:
  test::TempDir dir;
};

TEST_F(TrainerFaults, ResumeWithTheLossOwnGeneratorIsBitForBit) {
  torch::manual_seed(1);
  OwnGenToy full;
  Trainer a(full.net, full.loss(), opts(30));
  a.run();

  for (bool registered : {true, false}) {
    SCOPED_TRACE(registered ? "generator registered" : "not registered");
    const auto ckpt = dir.file(registered ? "reg.pt" : "unreg.pt");
    torch::manual_seed(1);
    OwnGenToy first;
    Trainer b(first.net, first.loss(), opts(12).checkpoint_path(ckpt));
    if (registered) {
      b.add_generator("data", first.gen);
    }
    b.run();

    torch::manual_seed(9);
    OwnGenToy second;  // a fresh generator, seeded as the first run's was
    Trainer c(second.net, second.loss(), opts(30).checkpoint_path(ckpt));
    if (registered) {
      c.add_generator("data", second.gen);
    }
    c.run();
    ASSERT_EQ(c.step_count(), 30);
    // The safeguard: without the generator in the checkpoint the resumed
    // run redraws the first run's batches and ends elsewhere.
    EXPECT_EQ(same_params(a.module(), c.module()), registered);
  }
}

TEST_F(TrainerFaults, StatesAreCheckedByName) {
  OwnGenToy toy;
  const auto ckpt = dir.file("ckpt.pt");
  Trainer a(toy.net, toy.loss(), opts(4).checkpoint_path(ckpt));
  a.run();
  EXPECT_TRUE(read_checkpoint_info(ckpt).extra_names.empty());
  // A run that registers a state cannot resume from a file without it.
  Trainer b(toy.net, toy.loss(), opts(8).checkpoint_path(ckpt));
  b.add_generator("data", toy.gen);
  EXPECT_THROW_MSG(b.run(), "holds no state named 'data'");
  EXPECT_EQ(read_checkpoint_info(ckpt).step, 4);
  // Custom states round-trip.
  int64_t position = 17;
  Trainer c(toy.net, toy.loss(), opts(6).checkpoint_path(dir.file("c.pt")));
  c.add_state(
      "position",
      [&] { return torch::tensor({position}); },
      [&](const torch::Tensor& t) { position = t[0].item<int64_t>(); });
  c.run();
  EXPECT_EQ(
      read_checkpoint_info(dir.file("c.pt")).extra_names,
      std::vector<std::string>{"position"});
  position = 0;
  Trainer d(toy.net, toy.loss(), opts(8).checkpoint_path(dir.file("c.pt")));
  d.add_state(
      "position",
      [&] { return torch::tensor({position}); },
      [&](const torch::Tensor& t) { position = t[0].item<int64_t>(); });
  d.run();
  EXPECT_EQ(position, 17);
  EXPECT_THROW_MSG(
      d.add_state(
          "position", [] { return torch::zeros({1}); }, [](auto&) {}),
      "'position' is already added");
  EXPECT_THROW_MSG(
      d.add_state(
          "", [] { return torch::zeros({1}); }, [](auto&) {}),
      "one non-empty line");
  EXPECT_THROW_MSG(d.add_generator("g", at::Generator()), "'g' is undefined");
}

TEST_F(TrainerFaults, SkipPolicySkipsBadStepsAndGoesOn) {
  OwnGenToy toy;
  const auto ckpt = dir.file("ckpt.pt");
  auto base = toy.loss();
  Trainer t(
      toy.net,
      [&](int64_t step) {
        auto l = base(step);
        return step == 7 || step == 8 ? l * INFINITY : l;
      },
      opts(20).checkpoint_path(ckpt).nonfinite(NonFinitePolicy::Skip));
  testing::internal::CaptureStderr();
  const auto last = t.run();
  const auto err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(t.step_count(), 20);
  EXPECT_EQ(t.skipped_steps(), 2);
  EXPECT_NE(err.find("skipped step 7: loss inf"), std::string::npos) << err;
  EXPECT_NE(err.find("skipped step 8"), std::string::npos) << err;
  EXPECT_TRUE(std::isfinite(last.loss));
  for (const auto& p : toy.net->parameters()) {
    EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  }
  EXPECT_EQ(read_checkpoint_info(ckpt).step, 20);
}

// SIGINT / SIGTERM raised from inside step k: the trainer finishes the step,
// writes the checkpoint, restores the caller's handler and returns; the
// resumed run equals an uninterrupted one.
void on_signal_count(int) {}

TEST_F(TrainerFaults, SignalsWriteACheckpointAndTheResumeLosesNothing) {
  torch::manual_seed(3);
  OwnGenToy full;
  Trainer a(full.net, full.loss(), opts(20));
  a.add_generator("data", full.gen);
  a.run();

  for (int sig : {SIGINT, SIGTERM}) {
    SCOPED_TRACE(sig == SIGINT ? "SIGINT" : "SIGTERM");
    const auto ckpt = dir.file("ckpt" + std::to_string(sig) + ".pt");
    struct sigaction mine {
    }, before{}, after{};
    mine.sa_handler = on_signal_count;
    sigemptyset(&mine.sa_mask);
    sigaction(sig, &mine, &before);

    torch::manual_seed(3);
    OwnGenToy first;
    auto base = first.loss();
    Trainer b(
        first.net,
        [&](int64_t step) {
          if (step == 6) {
            std::raise(sig);
          }
          return base(step);
        },
        opts(20).checkpoint_path(ckpt).stop_on_signal(true));
    b.add_generator("data", first.gen);
    b.run();
    EXPECT_TRUE(b.interrupted());
    EXPECT_EQ(b.stop_signal(), sig);
    EXPECT_EQ(b.step_count(), 7);
    EXPECT_EQ(read_checkpoint_info(ckpt).step, 7);
    sigaction(sig, nullptr, &after);
    EXPECT_EQ(after.sa_handler, &on_signal_count);

    OwnGenToy second;
    Trainer c(second.net, second.loss(), opts(20).checkpoint_path(ckpt));
    c.add_generator("data", second.gen);
    c.run();
    EXPECT_FALSE(c.interrupted());
    EXPECT_TRUE(same_params(a.module(), c.module()));
    sigaction(sig, &before, nullptr);
  }
}

TEST_F(TrainerFaults, AFullDiskStopsWithAClearErrorAndKeepsTheCheckpoint) {
  OwnGenToy toy(64, 3);
  const auto ckpt = dir.file("ckpt.pt");
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_xfsz = std::signal(SIGXFSZ, SIG_IGN);
  Trainer t(
      toy.net, toy.loss(), opts(20).checkpoint_path(ckpt).checkpoint_every(5));
  t.on_log([&](const TrainLogEntry& e) {
    if (e.step == 10) {  // after the step-5 checkpoint, before step 10's
      rlimit small = old;
      small.rlim_cur = 16 * 1024;  // the checkpoint is ~60 KB
      ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    }
  });
  std::string msg;
  try {
    t.run();
  } catch (const c10::Error& e) {
    msg = e.what_without_backtrace();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_xfsz);
  EXPECT_NE(msg.find("cannot write '" + ckpt + ".tmp'"), std::string::npos)
      << msg;
  EXPECT_NE(
      msg.find("the previous checkpoint at '" + ckpt + "' is unchanged"),
      std::string::npos)
      << msg;
  EXPECT_EQ(t.step_count(), 10);
  EXPECT_EQ(read_checkpoint_info(ckpt).step, 5);
  EXPECT_FALSE(fs::exists(ckpt + ".tmp"));
  // And it resumes from there.
  OwnGenToy again(64, 3);
  Trainer u(again.net, again.loss(), opts(12).checkpoint_path(ckpt));
  u.run();
  EXPECT_EQ(read_checkpoint_info(ckpt).step, 12);
}

TEST_F(TrainerFaults, AnUnwritableDirectoryStopsWithAClearError) {
  OwnGenToy toy;
  // A "directory" that is a regular file: unwritable even for root.
  {
    std::ofstream f(dir.file("file"));
    f << "x";
  }
  const auto bad = dir.file("file") + "/ckpt.pt";
  Trainer t(toy.net, toy.loss(), opts(5).checkpoint_path(bad));
  EXPECT_THROW_MSG(t.run(), "cannot write '" + bad + ".tmp'");
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root ignores directory permissions: the read-only case "
                    "runs for other users";
  }
  // A directory that turns read-only after the first checkpoint.
  const auto sub = dir.file("out");
  fs::create_directories(sub);
  const auto ckpt = sub + "/ckpt.pt";
  Trainer u(
      toy.net, toy.loss(), opts(10).checkpoint_path(ckpt).checkpoint_every(5));
  u.on_log([&](const TrainLogEntry& e) {
    if (e.step == 10) {
      fs::permissions(sub, fs::perms::owner_read | fs::perms::owner_exec);
    }
  });
  EXPECT_THROW_MSG(u.run(), "cannot write '" + ckpt + ".tmp'");
  fs::permissions(sub, fs::perms::owner_all);
  EXPECT_EQ(read_checkpoint_info(ckpt).step, 5);
}

// ---- SIGKILL in the middle of a checkpoint write (a child process) -------

constexpr const char* kChildEnv = "SBGM_FAULT_CHILD_DIR";

// The child: trains a model with a ~20 MB checkpoint, and as the step-10
// checkpoint is being written a watcher thread kills the process as soon as
// the file being written (the temporary one, or the checkpoint itself if it
// were written in place) has changed.
TEST(TrainerFaultChild, DISABLED_KilledDuringACheckpointWrite) {
  const char* d = std::getenv(kChildEnv);
  if (d == nullptr) {
    GTEST_SKIP() << "run by KilledDuringACheckpointWriteKeepsThePrevious";
  }
  const std::string ckpt = std::string(d) + "/ckpt.pt";
  torch::manual_seed(11);
  OwnGenToy toy(1024, 4);
  Trainer t(
      toy.net, toy.loss(), opts(20).checkpoint_path(ckpt).checkpoint_every(5));
  t.add_generator("data", toy.gen);
  std::atomic<bool> armed{false};
  std::thread watcher([&] {
    while (!armed) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::error_code ec;
    const auto size0 = fs::file_size(ckpt, ec);
    for (;;) {
      const auto tmp = fs::file_size(ckpt + ".tmp", ec);
      const bool tmp_growing = !ec && tmp > 0;
      const auto now = fs::file_size(ckpt, ec);
      if (tmp_growing || (!ec && now != size0)) {
        ::kill(::getpid(), SIGKILL);
      }
    }
  });
  t.on_log([&](const TrainLogEntry& e) {
    if (e.step == 10) {
      armed = true;  // the step-10 save follows this call
    }
  });
  t.run();
  watcher.join();
  FAIL() << "the watcher did not kill the process";
}

TEST_F(TrainerFaults, KilledDuringACheckpointWriteKeepsThePrevious) {
  const auto ckpt = dir.file("ckpt.pt");
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  // Not the parent's gtest sharding: the child runs its one test whatever.
  auto env = test::environment_without([](const std::string& k) {
    return k == "GTEST_TOTAL_SHARDS" || k == "GTEST_SHARD_INDEX";
  });
  env[kChildEnv] = dir.file("");
  const pid_t pid = test::spawn(
      self,
      {"--gtest_filter=TrainerFaultChild.DISABLED_KilledDuringACheckpointWrite",
       "--gtest_also_run_disabled_tests"},
      env,
      dir.file("child.log"));
  int status = 0;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL() << "the child did not end within 120 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "status " << status;
  EXPECT_TRUE(fs::exists(ckpt + ".tmp")) << "killed before the write began";
  // The previous checkpoint is whole, and the run resumes from it to the
  // same end as a run that was never killed.
  ASSERT_EQ(read_checkpoint_info(ckpt).step, 5);
  OwnGenToy resumed(1024, 4);
  Trainer r(resumed.net, resumed.loss(), opts(20).checkpoint_path(ckpt));
  r.add_generator("data", resumed.gen);
  r.run();
  torch::manual_seed(11);
  OwnGenToy full(1024, 4);
  Trainer f(full.net, full.loss(), opts(20));
  f.add_generator("data", full.gen);
  f.run();
  EXPECT_TRUE(same_params(r.module(), f.module()));
}

}  // namespace
}  // namespace sbgm
