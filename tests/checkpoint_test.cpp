// EMA and checkpoints.

#include "sbgm/train/checkpoint.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "sbgm/nets/mlp.h"
#include "sbgm/train/ema.h"
#include "support.h"

namespace sbgm {
namespace {

namespace fs = std::filesystem;

class TrainEMA : public test::SeededTest {};

TEST_F(TrainEMA, UpdateFollowsTheFormula) {
  torch::nn::Linear lin(2, 1);
  auto p0 = lin->weight.detach().clone();
  EMA ema(*lin, 0.9, /*warmup=*/true);
  // With warm-up the first decay is min(0.9, 1/10) = 0.1.
  EXPECT_DOUBLE_EQ(ema.current_decay(), 0.1);
  torch::NoGradGuard ng;
  lin->weight.fill_(1.0);
  ema.update(*lin);
  EXPECT_TRUE(test::all_close(ema.shadow()[0], 0.1 * p0 + 0.9, 1e-6, 1e-7));
  // Second: min(0.9, 2/11).
  EXPECT_DOUBLE_EQ(ema.current_decay(), 2.0 / 11.0);
  EXPECT_EQ(ema.num_updates(), 1);
  EMA plain(*lin, 0.9, /*warmup=*/false);
  EXPECT_DOUBLE_EQ(plain.current_decay(), 0.9);
  lin->weight.fill_(3.0);
  plain.update(*lin);
  EXPECT_TRUE(test::all_close(
      plain.shadow()[0], torch::full({1, 2}, 0.9 * 1.0 + 0.1 * 3.0)));
}

TEST_F(TrainEMA, ScopeSwapsAndRestores) {
  torch::nn::Linear lin(2, 2);
  EMA ema(*lin, 0.5, false);
  auto avg = lin->weight.detach().clone();
  {
    torch::NoGradGuard ng;
    lin->weight.add_(1.0);
  }
  auto trained = lin->weight.detach().clone();
  {
    EMA::Scope scope(ema, *lin);
    EXPECT_TRUE(torch::equal(lin->weight, avg));
  }
  EXPECT_TRUE(torch::equal(lin->weight, trained));
  ema.copy_to(*lin);
  EXPECT_TRUE(torch::equal(lin->weight, avg));
}

TEST_F(TrainEMA, RejectsBadInput) {
  torch::nn::Linear lin(2, 2);
  EXPECT_THROW_MSG(EMA(*lin, 1.5), "decay must lie in [0, 1], got 1.5");
  EXPECT_THROW_MSG(EMA(*lin, -0.1), "got -0.1");
  EMA ema(*lin, 0.9);
  torch::nn::Linear other(3, 2);
  EXPECT_THROW_MSG(ema.update(*other), "[2, 3]");
  torch::nn::Linear nobias(torch::nn::LinearOptions(2, 2).bias(false));
  EXPECT_THROW_MSG(ema.copy_to(*nobias), "1 parameters but the EMA tracks 2");
}

class TrainCheckpoint : public test::SeededTest {
 protected:
  MLP make_net(int64_t hidden = 16) {
    return MLP(MLPOptions(2).hidden(hidden).depth(2).num_timesteps(10));
  }
  // A few Adam steps so that the optimizer has state.
  void train(MLP& net, torch::optim::Optimizer& opt, EMA& ema, int steps) {
    for (int i = 0; i < steps; ++i) {
      opt.zero_grad();
      auto x = torch::randn({8, 2});
      auto t = torch::randint(0, 10, {8}, torch::kLong);
      net(x, t).square().mean().backward();
      opt.step();
      ema.update(*net);
    }
  }
  test::TempDir dir;
};

TEST_F(TrainCheckpoint, SaveThenLoadGivesIdenticalOutputsAndState) {
  auto a = make_net();
  torch::optim::Adam opt_a(a->parameters(), torch::optim::AdamOptions(1e-2));
  EMA ema_a(*a, 0.9);
  train(a, opt_a, ema_a, 5);
  const auto path = dir.file("a.pt");
  save_checkpoint(path, *a, 5, &opt_a, &ema_a);
  std::vector<torch::Tensor> saved_params, saved_shadow;
  for (const auto& p : a->parameters()) {
    saved_params.push_back(p.detach().clone());
  }
  for (const auto& p : ema_a.shadow()) {
    saved_shadow.push_back(p.clone());
  }
  auto info = read_checkpoint_info(path);
  EXPECT_EQ(info.version, kCheckpointVersion);
  EXPECT_EQ(info.step, 5);
  EXPECT_TRUE(info.has_optimizer && info.has_ema && info.has_rng);
  EXPECT_EQ(info.fingerprint, model_fingerprint(*a));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto after_save = torch::randn({3});  // RNG state after the save

  torch::manual_seed(123);
  auto b = make_net();
  torch::optim::Adam opt_b(b->parameters(), torch::optim::AdamOptions(1e-2));
  EMA ema_b(*b, 0.9);
  EXPECT_EQ(load_checkpoint(path, *b, &opt_b, &ema_b), 5);
  // The RNG is back where it was at the save.
  EXPECT_TRUE(torch::equal(torch::randn({3}), after_save));
  auto x = torch::randn({6, 2});
  auto t = torch::randint(0, 10, {6}, torch::kLong);
  EXPECT_TRUE(torch::equal(a(x, t), b(x, t)));
  ASSERT_EQ(ema_a.shadow().size(), ema_b.shadow().size());
  for (size_t i = 0; i < ema_a.shadow().size(); ++i) {
    EXPECT_TRUE(torch::equal(ema_a.shadow()[i], ema_b.shadow()[i]));
  }
  EXPECT_EQ(ema_a.num_updates(), ema_b.num_updates());
  // One more identical step keeps them equal (the Adam moments came along).
  torch::manual_seed(5);
  train(a, opt_a, ema_a, 1);
  torch::manual_seed(5);
  train(b, opt_b, ema_b, 1);
  EXPECT_TRUE(torch::equal(a(x, t), b(x, t)));

  // load_weights: the EMA average, or the trained weights.
  auto c = make_net();
  EXPECT_EQ(load_weights(path, *c, /*prefer_ema=*/false), 5);
  auto d = make_net();
  EXPECT_EQ(load_weights(path, *d, /*prefer_ema=*/true), 5);
  auto cp = c->parameters(), dp = d->parameters();
  ASSERT_EQ(dp.size(), saved_shadow.size());
  for (size_t i = 0; i < dp.size(); ++i) {
    EXPECT_TRUE(torch::equal(cp[i], saved_params[i]));
    EXPECT_TRUE(torch::equal(dp[i], saved_shadow[i]));
  }
}

TEST_F(TrainCheckpoint, DamagedForeignOrMismatchedFilesAreRefused) {
  auto a = make_net();
  torch::optim::Adam opt(a->parameters());
  EMA ema(*a, 0.9);
  const auto good = dir.file("good.pt");
  save_checkpoint(good, *a, 3, &opt, &ema);
  const auto bytes = test::read_file(good);
  auto before = a->parameters()[0].detach().clone();

  const auto trunc = dir.file("trunc.pt");
  test::write_file(trunc, bytes.substr(0, bytes.size() / 2));
  EXPECT_THROW_MSG(
      load_checkpoint(trunc, *a, &opt, &ema),
      "truncated, damaged or not a torch archive");
  const auto text = dir.file("text.pt");
  test::write_file(text, "this is not a checkpoint\n");
  EXPECT_THROW_MSG(load_checkpoint(text, *a), "cannot read '" + text + "'");
  const auto foreign = dir.file("foreign.pt");
  torch::save(torch::ones({3}), foreign);
  EXPECT_THROW_MSG(load_checkpoint(foreign, *a), "is not an sbgm checkpoint");
  EXPECT_THROW_MSG(read_checkpoint_info(foreign), "not an sbgm checkpoint");
  EXPECT_THROW_MSG(
      load_checkpoint(dir.file("missing.pt"), *a), "no checkpoint file");
  auto other = make_net(/*hidden=*/8);
  EXPECT_THROW_MSG(
      load_checkpoint(good, *other), "saved from a different model");
  EXPECT_THROW_MSG(load_weights(good, *other), "[16, 2]");
  // Nothing was modified by the failed loads.
  EXPECT_TRUE(torch::equal(a->parameters()[0], before));
  // A file saved without optimizer / EMA cannot fill them.
  const auto bare = dir.file("bare.pt");
  save_checkpoint(bare, *a, 1, nullptr, nullptr, false);
  EXPECT_THROW_MSG(load_checkpoint(bare, *a, &opt), "holds no optimizer state");
  EXPECT_THROW_MSG(load_checkpoint(bare, *a, nullptr, &ema), "holds no EMA");
  EXPECT_EQ(load_checkpoint(bare, *a), 1);
  // A different optimizer's state is refused.
  torch::optim::SGD sgd(a->parameters(), torch::optim::SGDOptions(0.1));
  EXPECT_THROW(load_checkpoint(good, *a, &sgd), c10::Error);
  // The good file is unchanged throughout.
  EXPECT_EQ(test::read_file(good), bytes);
}

TEST_F(TrainCheckpoint, AFailedSaveKeepsThePreviousCheckpoint) {
  auto a = make_net();
  const auto path = dir.file("ckpt.pt");
  save_checkpoint(path, *a, 1);
  const auto bytes = test::read_file(path);
  // Make the temporary file unwritable: a directory in its place.
  fs::create_directories(path + ".tmp/x");
  torch::NoGradGuard ng;
  a->parameters()[0].add_(1.0);
  EXPECT_THROW_MSG(
      save_checkpoint(path, *a, 2),
      "previous checkpoint at '" + path + "' is unchanged");
  EXPECT_EQ(test::read_file(path), bytes);
  EXPECT_EQ(read_checkpoint_info(path).step, 1);
}

TEST_F(TrainCheckpoint, RejectsBadArguments) {
  auto a = make_net();
  EXPECT_THROW_MSG(save_checkpoint("", *a, 0), "the path is empty");
  EXPECT_THROW_MSG(
      save_checkpoint(dir.file("x.pt"), *a, -1), "step must be >= 0, got -1");
}

}  // namespace
}  // namespace sbgm
