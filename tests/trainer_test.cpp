// The training loop: learning, clipping, warm-up, logs, checkpoints, resume.

#include "sbgm/train/trainer.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "sbgm/losses.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/optim/flat_adam.h"
#include "sbgm/optim/optimizer.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/schedule.h"
#include "sbgm/train/checkpoint.h"
#include "support.h"

namespace sbgm {
namespace {

namespace fs = std::filesystem;

int count_lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

// Swiss roll as scikit-learn's make_swiss_roll (x and z columns), noise 0.1,
// divided by 10; drawn from the global generator.
torch::Tensor swiss_roll(int64_t n) {
  auto u = torch::rand({n});
  auto tt = 1.5 * M_PI * (1 + 2 * u);
  auto pts = torch::stack({tt * torch::cos(tt), tt * torch::sin(tt)}, 1);
  return (pts + 0.1 * torch::randn({n, 2})) / 10.0;
}

class TrainerTest : public test::SeededTest {
 protected:
  test::TempDir dir;
};

TEST_F(TrainerTest, ShortRunLowersTheLossOnTheSwissRollAndSamples) {
  auto schedule = Schedule::linear(100, 1e-4, 0.1);
  DiscreteProcess process(schedule);
  MLP net(MLPOptions(2).num_timesteps(100));
  Model model(net, Prediction::Epsilon);
  // A fixed evaluation batch.
  auto x_eval = swiss_roll(2000);
  auto t_eval = torch::randint(0, 100, {2000}, torch::kLong);
  auto z_eval = torch::randn({2000, 2});
  auto eval = [&] {
    torch::NoGradGuard ng;
    return diffusion_loss(model, process, x_eval, t_eval, z_eval)
        .item<double>();
  };
  const double before = eval();
  Trainer trainer(
      net,
      [&](int64_t) {
        return epsilon_loss(
            model,
            process,
            swiss_roll(128),
            LossOptions().sampling(TimeSampling::Antithetic));
      },
      TrainerOptions(1500).lr(3e-3).log_every(500).ema_decay(0.99));
  std::vector<TrainLogEntry> log;
  trainer.on_log([&](const TrainLogEntry& e) { log.push_back(e); });
  const auto last = trainer.run();
  EXPECT_EQ(trainer.step_count(), 1500);
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(last.step, 1500);
  EXPECT_LT(log.back().loss, log.front().loss);
  const double after = eval();
  EXPECT_LT(after, 0.75 * before) << "before " << before << " after " << after;
  EXPECT_GT(last.it_per_s, 0.0);

  // DDPM ancestral sampling with the EMA weights gives finite points near
  // the data.
  EMA::Scope ema_weights(*trainer.ema(), *net);
  torch::NoGradGuard ng;
  auto betas = schedule.betas().to(torch::kFloat);
  auto abar = schedule.alphas_cumprod().to(torch::kFloat);
  auto x = torch::randn({1000, 2});
  for (int64_t i = 99; i >= 0; --i) {
    const double b = betas[i].item<double>(), ab = abar[i].item<double>();
    auto eps = net(x, torch::full({1000}, i, torch::kLong));
    x = (x - b / std::sqrt(1 - ab) * eps) / std::sqrt(1 - b);
    if (i > 0) {
      x = x + std::sqrt(b) * torch::randn_like(x);
    }
  }
  EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
  EXPECT_LT(x.abs().max().item<double>(), 5.0);
}

// A 2-D toy loss on a small net that draws from the global generator.
struct Toy {
  MLP net = MLP(MLPOptions(2).hidden(16).depth(2).num_timesteps(20));
  Model model{net, Prediction::Epsilon};
  DiscreteProcess process{Schedule::linear(20, 1e-2, 0.5)};
  LossFn loss() {
    return [this](int64_t) {
      return epsilon_loss(model, process, swiss_roll(32));
    };
  }
};

void expect_same_state(Trainer& a, Trainer& b) {
  auto pa = a.module().parameters(), pb = b.module().parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
    EXPECT_TRUE(torch::equal(a.ema()->shadow()[i], b.ema()->shadow()[i]))
        << "EMA " << i;
  }
}

TEST_F(TrainerTest, ResumeEqualsAnUninterruptedRunBitForBit) {
  for (bool flat : {true, false}) {
    SCOPED_TRACE(flat ? "FlatAdam" : "torch Adam");
    auto opt_for =
        [flat](Toy& toy) -> std::shared_ptr<torch::optim::Optimizer> {
      if (flat) {
        return nullptr;  // the default FlatAdam
      }
      return std::make_shared<torch::optim::Adam>(
          toy.net->parameters(), torch::optim::AdamOptions(2e-3));
    };
    auto opts = [](int64_t steps) {
      return TrainerOptions(steps).lr(2e-3).lr_warmup(8).log_every(5);
    };
    torch::manual_seed(42);
    Toy full;
    Trainer a(full.net, full.loss(), opts(30), opt_for(full));
    a.run();

    const auto ckpt = dir.file(flat ? "flat.pt" : "adam.pt");
    torch::manual_seed(42);
    Toy first;
    Trainer b(
        first.net,
        first.loss(),
        opts(12).checkpoint_path(ckpt).checkpoint_every(5),
        opt_for(first));
    b.run();
    EXPECT_EQ(read_checkpoint_info(ckpt).step, 12);

    torch::manual_seed(7);  // a different initialization and RNG state
    Toy second;
    Trainer c(
        second.net,
        second.loss(),
        opts(30).checkpoint_path(ckpt),
        opt_for(second));
    c.run();
    EXPECT_EQ(c.step_count(), 30);
    expect_same_state(a, c);
    EXPECT_EQ(read_checkpoint_info(ckpt).step, 30);
  }
}

TEST_F(TrainerTest, DefaultOptimizerIsFlatAdamWithFusedClipping) {
  Toy toy;
  Trainer t(toy.net, toy.loss(), TrainerOptions(1).grad_clip(0.5));
  auto* flat = dynamic_cast<FlatAdam*>(t.optimizer().torch_optimizer());
  ASSERT_NE(flat, nullptr);
  EXPECT_DOUBLE_EQ(
      static_cast<FlatAdamOptions&>(flat->param_groups()[0].options())
          .max_grad_norm(),
      0.5);
}

// loss = <a, w> for one parameter w: gradient a, norm |a|.
struct Linear1 : torch::nn::Module {
  Linear1() {
    w = register_parameter("w", torch::zeros({4}));
  }
  torch::Tensor w;
};

TEST_F(TrainerTest, ClipsTheGradientNormAndLogsItBeforeClipping) {
  auto a = torch::tensor({3.0f, 4.0f, 0.0f, 12.0f});  // |a| = 13
  for (bool flat : {true, false}) {
    SCOPED_TRACE(flat ? "FlatAdam" : "SGD");
    auto m = std::make_shared<Linear1>();
    std::shared_ptr<torch::optim::Optimizer> opt;
    if (!flat) {
      opt = std::make_shared<torch::optim::SGD>(
          m->parameters(), torch::optim::SGDOptions(1.0));
    }
    Trainer t(
        m,
        [&](int64_t) { return (m->w * a).sum(); },
        TrainerOptions(1).grad_clip(2.0).log_every(1).ema_decay(0).lr(1.0),
        opt);
    EXPECT_EQ(t.ema(), nullptr);
    const auto e = t.run();
    EXPECT_NEAR(e.grad_norm, 13.0, 1e-4);
    if (!flat) {
      // SGD with lr 1 moves w by the clipped gradient: -a * 2 / 13.
      EXPECT_TRUE(test::all_close(m->w, -a * (2.0 / 13.0), 1e-5, 1e-6));
    } else {
      // Adam's first step moves each coordinate with a nonzero gradient by
      // lr; clipping does not change the sign.
      EXPECT_TRUE(test::all_close(
          m->w, torch::tensor({-1.0f, -1.0f, 0.0f, -1.0f}), 1e-5, 1e-6));
    }
  }
}

TEST_F(TrainerTest, LearningRateWarmupAndCsvLog) {
  Toy toy;
  const auto csv = dir.file("loss.csv");
  Trainer t(
      toy.net,
      toy.loss(),
      TrainerOptions(20).lr(1e-2).lr_warmup(10).log_every(5).csv_path(csv));
  std::vector<TrainLogEntry> log;
  t.on_log([&](const TrainLogEntry& e) { log.push_back(e); });
  t.run();
  ASSERT_EQ(log.size(), 4u);
  // lr * min(1, (step + 1) / warmup) set before step index 4 (the 5th step).
  EXPECT_NEAR(log[0].lr, 1e-2 * 5 / 10, 1e-12);
  EXPECT_NEAR(log[1].lr, 1e-2, 1e-12);
  const auto text = test::read_file(csv);
  EXPECT_EQ(text.rfind("step,loss,grad_norm,lr,it_per_s,elapsed_s\n", 0), 0u);
  EXPECT_EQ(count_lines(text), 5);
  std::istringstream is(text);
  std::string header, row;
  std::getline(is, header);
  std::getline(is, row);
  EXPECT_EQ(row.rfind("5,", 0), 0u) << row;
  double loss = std::stod(row.substr(2));
  EXPECT_NEAR(loss, log[0].loss, 1e-6 * std::abs(log[0].loss));
  // Cosine decay after the warm-up: lr min(1, (s + 1) / w) (1 + cos(pi s /
  // S)) / 2 at the step s each log entry reports the rate of.
  Trainer c(
      toy.net,
      toy.loss(),
      TrainerOptions(20)
          .lr(1e-2)
          .lr_warmup(4)
          .lr_schedule(LRSchedule::Cosine)
          .log_every(5));
  std::vector<double> lrs;
  c.on_log([&](const TrainLogEntry& e) { lrs.push_back(e.lr); });
  c.run();
  ASSERT_EQ(lrs.size(), 4u);
  for (int k = 0; k < 4; ++k) {
    const int s = 5 * k + 4;  // the last step of each window
    const double want = 1e-2 * std::min(1.0, (s + 1) / 4.0) * 0.5 *
                        (1 + std::cos(M_PI * s / 20.0));
    EXPECT_NEAR(lrs[k], want, 1e-12) << k;
  }
}

TEST_F(TrainerTest, ProgressBarOnlyWhenAsked) {
  Toy toy;
  ::testing::internal::CaptureStderr();
  Trainer(
      toy.net,
      toy.loss(),
      TrainerOptions(3).log_every(1).progress(ProgressMode::On))
      .run();
  const auto on = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(on.find("3/3"), std::string::npos) << on;
  EXPECT_NE(on.find("it/s"), std::string::npos) << on;
  EXPECT_NE(on.find("loss"), std::string::npos) << on;
  // Auto: stderr is a file here, not a terminal.
  ::testing::internal::CaptureStderr();
  Trainer(toy.net, toy.loss(), TrainerOptions(3).log_every(1)).run();
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

TEST_F(TrainerTest, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  Toy toy;
  const auto ckpt = dir.file("ckpt.pt");
  auto base = toy.loss();
  Trainer t(
      toy.net,
      [&](int64_t step) {
        auto l = base(step);
        return step >= 7 ? l * std::nan("") : l;
      },
      TrainerOptions(20).log_every(5).checkpoint_path(ckpt).checkpoint_every(
          5));
  // The first bad step is named, with no per-step host sync.
  EXPECT_THROW_MSG(
      t.run(),
      "loss became non-finite (nan) at step 7; training stopped "
      "(NonFinitePolicy::Skip would skip such steps); the last good "
      "checkpoint is '" +
          ckpt + "' (step 5)");
  EXPECT_EQ(read_checkpoint_info(ckpt).step, 5);
  EXPECT_FALSE(fs::exists(ckpt + ".tmp"));
  // Its weights are finite.
  Toy fresh;
  load_weights(ckpt, *fresh.net);
  for (const auto& p : fresh.net->parameters()) {
    EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
  }
  // Without a checkpoint path the message says so.
  Toy other;
  Trainer u(
      other.net,
      [&](int64_t s) { return other.loss()(s) * INFINITY; },
      TrainerOptions(4).log_every(2));
  EXPECT_THROW_MSG(u.run(), "non-finite");
  // An infinite gradient with a finite loss is named as such.
  Toy third;
  auto base3 = third.loss();
  Trainer v(
      third.net,
      [&](int64_t step) {
        auto l = base3(step);
        if (step == 3) {
          // sqrt at 0: a finite value (0) with an infinite gradient.
          auto w = third.net->parameters()[0].flatten()[0];
          l = l + torch::sqrt(w - w.detach());
        }
        return l;
      },
      TrainerOptions(10).log_every(5).grad_clip(0.0));
  EXPECT_THROW_MSG(v.run(), "gradient norm became non-finite (inf) at step 3");
}

TEST_F(TrainerTest, ResumeRefusesADamagedCheckpointAndLeavesIt) {
  Toy toy;
  const auto ckpt = dir.file("ckpt.pt");
  {
    std::ofstream out(ckpt, std::ios::binary);
    out << "garbage";
  }
  Trainer t(toy.net, toy.loss(), TrainerOptions(5).checkpoint_path(ckpt));
  EXPECT_THROW_MSG(t.run(), "truncated, damaged");
  EXPECT_EQ(test::read_file(ckpt), "garbage");
  // A checkpoint of another model is refused too.
  Trainer(
      toy.net, toy.loss(), TrainerOptions(2).checkpoint_path(dir.file("a.pt")))
      .run();
  MLP other(MLPOptions(2).hidden(8).num_timesteps(20));
  Model m(other, Prediction::Epsilon);
  Trainer v(
      other,
      [&](int64_t) {
        return m(torch::randn({4, 2}), torch::zeros({4}, torch::kLong)).sum();
      },
      TrainerOptions(5).checkpoint_path(dir.file("a.pt")));
  EXPECT_THROW_MSG(v.run(), "different model");
}

TEST_F(TrainerTest, RejectsBadInput) {
  Toy toy;
  auto loss = toy.loss();
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(-1)), "steps must be >= 0, got -1");
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(1).log_every(0)),
      "log_every must be > 0, got 0");
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(1).ema_decay(1.0)),
      "ema_decay must lie in [0, 1), got 1");
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(1).lr(0)), "lr must be > 0, got 0");
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(1).print_every(-3)),
      "print_every must be >= 0, got -3");
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(1).lr_warmup(-2)),
      "lr_warmup must be >= 0, got -2");
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(1).checkpoint_every(-1)),
      "checkpoint_every must be >= 0");
  EXPECT_THROW_MSG(
      Trainer(toy.net, loss, TrainerOptions(1).grad_clip(NAN)),
      "grad_clip must be finite");
  EXPECT_THROW_MSG(
      Trainer(toy.net, LossFn(), TrainerOptions(1)), "loss function is empty");
  EXPECT_THROW_MSG(
      Trainer(std::shared_ptr<torch::nn::Module>(), loss, TrainerOptions(1)),
      "module is null");
  EXPECT_THROW_MSG(
      Trainer(
          toy.net, [](int64_t) { return torch::ones({2}); }, TrainerOptions(1))
          .run(),
      "single-element tensor, got [2]");
  EXPECT_THROW_MSG(
      Trainer(
          toy.net, [](int64_t) { return torch::ones({}); }, TrainerOptions(1))
          .run(),
      "does not require grad");
  EXPECT_THROW_MSG(
      Trainer(
          toy.net,
          loss,
          TrainerOptions(1).csv_path(dir.file("no/such/dir/x.csv")))
          .run(),
      "cannot open the CSV log");
}

// The loop of run() written out with the public pieces.
void hand_loop(Trainer& t) {
  t.begin();
  while (t.step_count() < t.options().steps()) {
    t.step();
    if (t.log_due()) {
      t.log();
    }
    if (t.checkpoint_due()) {
      t.checkpoint();
    }
  }
  t.end();
}

TEST_F(TrainerTest, HandWrittenLoopEqualsRunBitForBitIncludingResume) {
  for (bool flat : {true, false}) {
    SCOPED_TRACE(flat ? "FlatAdam" : "torch Adam");
    auto opt_for =
        [flat](Toy& toy) -> std::shared_ptr<torch::optim::Optimizer> {
      if (flat) {
        return nullptr;  // the default FlatAdam
      }
      return std::make_shared<torch::optim::Adam>(
          toy.net->parameters(), torch::optim::AdamOptions(2e-3));
    };
    auto opts = [](int64_t steps) {
      return TrainerOptions(steps).lr(2e-3).lr_warmup(8).log_every(5);
    };
    torch::manual_seed(42);
    Toy full;
    Trainer a(full.net, full.loss(), opts(30), opt_for(full));
    std::vector<TrainLogEntry> log_a;
    a.on_log([&](const TrainLogEntry& e) { log_a.push_back(e); });
    a.run();

    // The same 30 steps by hand: the same weights and the same log.
    torch::manual_seed(42);
    Toy by_hand;
    Trainer h(by_hand.net, by_hand.loss(), opts(30), opt_for(by_hand));
    std::vector<TrainLogEntry> log_h;
    h.on_log([&](const TrainLogEntry& e) { log_h.push_back(e); });
    hand_loop(h);
    EXPECT_EQ(h.step_count(), 30);
    expect_same_state(a, h);
    ASSERT_EQ(log_h.size(), log_a.size());
    for (size_t i = 0; i < log_a.size(); ++i) {
      EXPECT_EQ(log_h[i].step, log_a[i].step);
      EXPECT_EQ(log_h[i].loss, log_a[i].loss);
      EXPECT_EQ(log_h[i].grad_norm, log_a[i].grad_norm);
      EXPECT_EQ(log_h[i].lr, log_a[i].lr);
    }

    // 12 steps by hand with checkpoints, then a fresh trainer resumed by
    // hand to 30: the same as run() to 30.
    const auto ckpt = dir.file(flat ? "flat.pt" : "adam.pt");
    torch::manual_seed(42);
    Toy first;
    Trainer b(
        first.net,
        first.loss(),
        opts(12).checkpoint_path(ckpt).checkpoint_every(5),
        opt_for(first));
    hand_loop(b);
    EXPECT_EQ(read_checkpoint_info(ckpt).step, 12);

    torch::manual_seed(7);  // a different initialization and RNG state
    Toy second;
    Trainer c(
        second.net,
        second.loss(),
        opts(30).checkpoint_path(ckpt),
        opt_for(second));
    EXPECT_TRUE(c.begin());
    EXPECT_EQ(c.step_count(), 12);
    hand_loop(c);
    EXPECT_EQ(c.step_count(), 30);
    expect_same_state(a, c);
    EXPECT_EQ(read_checkpoint_info(ckpt).step, 30);
  }
}

TEST_F(TrainerTest, StepReturnsTheLossAndLogAveragesTheWindow) {
  // loss = <a, w> + c with SGD at lr 0: the loss stays c, the norm |a|.
  auto a = torch::tensor({3.0f, 4.0f, 0.0f, 12.0f});  // |a| = 13
  auto m = std::make_shared<Linear1>();
  Trainer t(
      m,
      [&](int64_t s) { return (m->w * a).sum() + static_cast<double>(s); },
      TrainerOptions(4).grad_clip(0).ema_decay(0).log_every(100),
      std::make_shared<torch::optim::SGD>(
          m->parameters(), torch::optim::SGDOptions(0.0)));
  t.begin();
  EXPECT_FALSE(t.log_due());
  for (int64_t s = 0; s < 3; ++s) {
    const auto loss = t.step();
    EXPECT_FALSE(loss.requires_grad());
    EXPECT_EQ(loss.item<double>(), static_cast<double>(s));
  }
  EXPECT_FALSE(t.log_due());
  const auto e = t.log();
  EXPECT_EQ(e.step, 3);
  EXPECT_DOUBLE_EQ(e.loss, (0.0 + 1.0 + 2.0) / 3.0);
  EXPECT_NEAR(e.grad_norm, 13.0, 1e-5);
  t.step();
  EXPECT_TRUE(t.log_due());          // the last step
  EXPECT_FALSE(t.checkpoint_due());  // no checkpoint path
  EXPECT_DOUBLE_EQ(t.log().loss, 3.0);
  EXPECT_EQ(t.end().step, 4);
}

TEST_F(TrainerTest, PrintsEveryOptionStepsAndAtTheEnd) {
  Toy toy;
  ::testing::internal::CaptureStdout();
  Trainer(toy.net, toy.loss(), TrainerOptions(25).log_every(5).print_every(10))
      .run();
  const auto out = ::testing::internal::GetCapturedStdout();
  // Log entries at 5, 10, ..., 25; printed at 10, 20 and the last, 25.
  EXPECT_EQ(count_lines(out), 3) << out;
  EXPECT_EQ(out.rfind("step     10  loss ", 0), 0u) << out;
  EXPECT_NE(out.find("\nstep     20  loss "), std::string::npos) << out;
  EXPECT_NE(out.find("\nstep     25  loss "), std::string::npos) << out;
  EXPECT_NE(out.find(" it/s "), std::string::npos) << out;
}

TEST_F(TrainerTest, PiecesNeedABegunRunAndACheckpointPath) {
  Toy toy;
  Trainer t(toy.net, toy.loss(), TrainerOptions(3));
  EXPECT_THROW_MSG(t.step(), "Trainer::step: no run has begun");
  EXPECT_THROW_MSG(t.log(), "Trainer::log: no run has begun");
  EXPECT_THROW_MSG(t.checkpoint(), "Trainer::checkpoint: no run has begun");
  EXPECT_FALSE(t.begin());
  t.step();
  EXPECT_THROW_MSG(
      t.checkpoint(), "Trainer::checkpoint: options.checkpoint_path is empty");
  t.end();
  EXPECT_THROW_MSG(t.step(), "call begin() first");
}

// An optimizer written against the interface alone: plain SGD that counts
// its steps (state a checkpoint must carry).
class CountingSGD : public Optimizer {
 public:
  CountingSGD(std::vector<torch::Tensor> params, double lr)
      : params_(std::move(params)), lr_(lr) {}
  void zero_grad() override {
    for (auto& p : params_) {
      if (p.grad().defined()) {
        p.mutable_grad().zero_();
      }
    }
  }
  void step() override {
    torch::NoGradGuard no_grad;
    for (auto& p : params_) {
      p.add_(p.grad(), -lr_);
    }
    ++steps_;
  }
  size_t num_groups() const override {
    return 1;
  }
  double lr(size_t) const override {
    return lr_;
  }
  void set_lr(size_t, double lr) override {
    lr_ = lr;
  }
  void save(torch::serialize::OutputArchive& archive) const override {
    archive.write("counting_sgd/steps", torch::tensor(steps_, torch::kLong));
  }
  void load(torch::serialize::InputArchive& archive) override {
    torch::Tensor s;
    archive.read("counting_sgd/steps", s);
    steps_ = s.item<int64_t>();
  }
  int64_t steps() const {
    return steps_;
  }

 private:
  std::vector<torch::Tensor> params_;
  double lr_;
  int64_t steps_ = 0;
};

TEST_F(TrainerTest, AUserOptimizerPlugsInThroughTheInterface) {
  // loss = <a, w>: gradient a, |a| = 13. The trainer clips to 2 itself
  // (the optimizer does not fuse clipping), so each step moves w by
  // -lr a 2 / (13 + 1e-6) (to float precision: the norm is a float).
  const auto a = torch::tensor({3.0, 4.0, 0.0, 12.0}, torch::kDouble);
  const double lr = 0.1, coef = 2.0 / (13.0 + 1e-6);
  const auto ckpt = dir.file("sgd.pt");
  auto make = [&](int64_t steps, std::shared_ptr<CountingSGD>* opt) {
    auto m = std::make_shared<Linear1>();
    m->to(torch::kDouble);
    *opt = std::make_shared<CountingSGD>(m->parameters(), lr);
    auto* w = &m->w;
    return std::make_unique<Trainer>(
        m,
        [w, a](int64_t) { return (*w * a).sum(); },
        TrainerOptions(steps).grad_clip(2.0).ema_decay(0).checkpoint_path(ckpt),
        std::static_pointer_cast<Optimizer>(*opt));
  };
  std::shared_ptr<CountingSGD> o3, o5;
  auto t3 = make(3, &o3);
  EXPECT_FALSE(t3->optimizer().clips());
  EXPECT_EQ(t3->optimizer().torch_optimizer(), nullptr);
  t3->run();
  EXPECT_EQ(o3->steps(), 3);
  // Resumed to 5: the weights and the optimizer's own state come back.
  auto t5 = make(5, &o5);
  t5->run();
  EXPECT_EQ(o5->steps(), 5);
  const auto w = t5->module().parameters()[0];
  EXPECT_TRUE(test::all_close(w, -5.0 * lr * coef * a, 1e-6, 1e-12)) << w;
}

TEST_F(TrainerTest, TorchAdamWThroughTheInterfaceEqualsItsOwnLoop) {
  // make_optimizer wraps AdamW in a TorchOptimizer: the trainer's steps are
  // AdamW's own (no clipping, no warm-up), bit for bit.
  auto x = torch::randn({16, 2}), y = torch::randn({16, 1});
  auto a = torch::nn::Linear(2, 1);
  auto b = torch::nn::Linear(2, 1);
  {
    torch::NoGradGuard no_grad;
    b->weight.copy_(a->weight);
    b->bias.copy_(a->bias);
  }
  auto adamw = [](torch::nn::Linear& l) {
    return std::make_shared<torch::optim::AdamW>(
        l->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  };
  auto wrapped = make_optimizer(adamw(a));
  ASSERT_NE(dynamic_cast<TorchOptimizer*>(wrapped.get()), nullptr);
  EXPECT_NE(
      dynamic_cast<torch::optim::AdamW*>(wrapped->torch_optimizer()), nullptr);
  EXPECT_FALSE(wrapped->fuse_grad_clip(1.0));
  EXPECT_FALSE(wrapped->clips());
  EXPECT_FALSE(wrapped->flat_grad().defined());
  Trainer t(
      a,
      [&](int64_t) { return (a(x) - y).pow(2).mean(); },
      TrainerOptions(10).grad_clip(0).ema_decay(0),
      wrapped);
  t.run();
  auto ref = adamw(b);
  for (int k = 0; k < 10; ++k) {
    ref->zero_grad();
    (b(x) - y).pow(2).mean().backward();
    ref->step();
  }
  EXPECT_TRUE(torch::equal(a->weight, b->weight));
  EXPECT_TRUE(torch::equal(a->bias, b->bias));
}

TEST_F(TrainerTest, OptimizerInterfaceWrapsAndChecks) {
  EXPECT_EQ(make_optimizer(nullptr), nullptr);
  auto net = torch::nn::Linear(2, 3);
  auto flat = make_optimizer(std::make_shared<FlatAdam>(net->parameters()));
  ASSERT_NE(dynamic_cast<FlatAdamOptimizer*>(flat.get()), nullptr);
  EXPECT_FALSE(flat->clips());
  EXPECT_FALSE(flat->last_grad_norm().defined());
  EXPECT_TRUE(flat->fuse_grad_clip(0.5));
  EXPECT_TRUE(flat->clips());
  EXPECT_EQ(flat->flat_grad().numel(), 2 * 3 + 3);
  EXPECT_EQ(flat->num_groups(), 1u);
  flat->set_lr(0, 0.25);
  EXPECT_EQ(flat->lr(0), 0.25);
  EXPECT_THROW_MSG(
      flat->fuse_grad_clip(0.0),
      "fuse_grad_clip: max_norm must be finite and > 0, got 0");
  EXPECT_THROW_MSG(flat->lr(1), "TorchOptimizer::lr: group 1 out of range");
  EXPECT_THROW_MSG(
      flat->set_lr(2, 1.0), "TorchOptimizer::set_lr: group 2 out of range");
  EXPECT_THROW_MSG(
      TorchOptimizer(nullptr), "TorchOptimizer: the optimizer is null");
}

}  // namespace
}  // namespace sbgm
