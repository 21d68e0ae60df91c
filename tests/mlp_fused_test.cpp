#include <gtest/gtest.h>
#include <sbgm/nets/mlp_fused.h>
#include <sbgm/optim/flat_adam.h>
#include <sbgm/train/trainer.h>

#include "support.h"

namespace {

using sbgm::FusedMLPStep;
using sbgm::MLP;
using sbgm::MLPOptions;

class FusedMLPStepTest : public sbgm::test::SeededTest {};

// The hand-derived gradients equal autograd's on the same batch (float64),
// including repeated steps in t (the embedding rows accumulate).
TEST_F(FusedMLPStepTest, MatchesAutograd) {
  for (int64_t depth : {1, 3}) {
    MLP net(MLPOptions(3).hidden(16).depth(depth).num_timesteps(7));
    net->to(torch::kDouble);
    const auto x = torch::randn({37, 3}, torch::kDouble);
    const auto target = torch::randn({37, 3}, torch::kDouble);
    const auto t = torch::randint(7, {37}, torch::kLong);

    const auto ref_loss = (net->forward(x, t) - target).square().mean();
    ref_loss.backward();
    std::vector<torch::Tensor> ref_grads;
    for (auto& p : net->parameters()) {
      ref_grads.push_back(p.grad().clone());
      p.mutable_grad() = torch::Tensor();
    }
    FusedMLPStep step(net);
    const auto loss = step(x, t, target);
    EXPECT_NEAR(loss.item<double>(), ref_loss.item<double>(), 1e-12);
    const auto params = net->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      ASSERT_TRUE(params[i].grad().defined()) << "parameter " << i;
      EXPECT_LT(sbgm::test::max_abs_diff(params[i].grad(), ref_grads[i]), 1e-12)
          << "parameter " << i << " depth " << depth;
    }
    // A second call accumulates, as backward() does.
    step(x, t, target);
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_LT(
          sbgm::test::max_abs_diff(params[i].grad(), 2 * ref_grads[i]), 1e-12);
    }
  }
}

// Both CPU paths against autograd: the BLAS path (contiguous float and
// double) and the tensor path (taken for a non-contiguous x), at depth 2
// with hidden != input_dim so that every matrix product's shape is distinct.
TEST_F(FusedMLPStepTest, BothCpuPathsMatchAutograd) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    for (bool contiguous : {true, false}) {
      MLP net(MLPOptions(5).hidden(12).depth(2).num_timesteps(9));
      net->to(dtype);
      auto xt = torch::randn({5, 23}, dtype);
      const auto x = contiguous ? xt.t().contiguous() : xt.t();
      ASSERT_EQ(x.is_contiguous(), contiguous);
      const auto target = torch::randn({23, 5}, dtype);
      const auto t = torch::randint(9, {23}, torch::kLong);
      const auto ref_loss = (net->forward(x, t) - target).square().mean();
      ref_loss.backward();
      std::vector<torch::Tensor> ref_grads;
      for (auto& p : net->parameters()) {
        ref_grads.push_back(p.grad().clone());
        p.mutable_grad() = torch::Tensor();
      }
      FusedMLPStep step(net);
      const auto loss = step(x, t, target);
      const double tol = dtype == torch::kFloat ? 2e-5 : 1e-12;
      EXPECT_NEAR(loss.item<double>(), ref_loss.item<double>(), tol);
      EXPECT_EQ(loss.scalar_type(), dtype);
      const auto params = net->parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        EXPECT_LT(sbgm::test::max_abs_diff(params[i].grad(), ref_grads[i]), tol)
            << "parameter " << i << " dtype " << dtype << " contiguous "
            << contiguous;
      }
      // Out-of-range steps are refused by either path, naming the value.
      EXPECT_THROW_MSG(
          step(x, torch::full({23}, 9, torch::kLong), target),
          "step indices must lie in [0, 9), got values in [9, 9]");
      EXPECT_THROW_MSG(
          step(x, torch::full({23}, -2, torch::kLong), target),
          "got values in [-2, -2]");
    }
  }
}

// With FlatAdam the parameters are views of one buffer; the fused step writes
// the gradients where the optimizer reads them, so a training run with it
// equals one with autograd.
TEST_F(FusedMLPStepTest, TrainsLikeAutogradWithFlatAdam) {
  auto make = [] {
    torch::manual_seed(3);
    MLP net(MLPOptions(2).hidden(8).num_timesteps(5));
    net->to(torch::kDouble);
    return net;
  };
  MLP a = make(), b = make();
  sbgm::FlatAdam oa(
      a->parameters(), sbgm::FlatAdamOptions(1e-2).max_grad_norm(1.0));
  sbgm::FlatAdam ob(
      b->parameters(), sbgm::FlatAdamOptions(1e-2).max_grad_norm(1.0));
  FusedMLPStep fused(b);
  for (int i = 0; i < 20; ++i) {
    const auto x = torch::randn({16, 2}, torch::kDouble);
    const auto e = torch::randn({16, 2}, torch::kDouble);
    const auto t = torch::randint(5, {16}, torch::kLong);
    oa.zero_flat_grad();
    (a->forward(x, t) - e).square().mean().backward();
    oa.step();
    ob.zero_flat_grad();
    fused(x, t, e);
    ob.step();
  }
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_LT(sbgm::test::max_abs_diff(pa[i], pb[i]), 1e-10)
        << "parameter " << i;
  }
}

TEST_F(FusedMLPStepTest, RejectsWhatItCannotDerive) {
  MLP sin_net(MLPOptions(2).embedding(sbgm::TimeEmbeddingKind::Sinusoidal));
  EXPECT_THROW_MSG(
      FusedMLPStep{sin_net},
      "needs an unconditional MLP with a Learned embedding");
  MLP silu_net(
      MLPOptions(2).num_timesteps(4).activation(sbgm::Activation::SiLU));
  EXPECT_THROW_MSG(FusedMLPStep{silu_net}, "activation silu");
  MLP cond_net(MLPOptions(2).num_timesteps(4).num_classes(3));
  EXPECT_THROW_MSG(FusedMLPStep{cond_net}, "num_classes 3");

  MLP net(MLPOptions(2).num_timesteps(4));
  FusedMLPStep step(net);
  const auto x = torch::randn({6, 2});
  const auto t = torch::randint(4, {6}, torch::kLong);
  EXPECT_THROW_MSG(
      step(torch::randn({6, 3}), t, torch::randn({6, 3})),
      "x must have shape [N, 2]");
  EXPECT_THROW_MSG(step(x, t, torch::randn({5, 2})), "target has shape [5, 2]");
  EXPECT_THROW_MSG(
      step(x, torch::randint(4, {5}, torch::kLong), x), "t has 5 entries");
  EXPECT_THROW_MSG(
      step(x, torch::full({6}, 4, torch::kLong), x),
      "step indices must lie in [0, 4), got values in [4, 4]");
}

// The Trainer runs a closure that computes its own gradients (no backward())
// and ends where the autograd closure ends.
TEST_F(FusedMLPStepTest, TrainerAcceptsAClosureThatComputesGradients) {
  auto run = [](bool fused_path, bool flag) {
    torch::manual_seed(5);
    MLP net(MLPOptions(2).hidden(8).num_timesteps(5));
    net->to(torch::kDouble);
    auto fused = std::make_shared<FusedMLPStep>(net);
    sbgm::Trainer trainer(
        net,
        [net, fused, fused_path](int64_t step) mutable {
          torch::manual_seed(100 + step);
          const auto x = torch::randn({16, 2}, torch::kDouble);
          const auto e = torch::randn({16, 2}, torch::kDouble);
          const auto t = torch::randint(5, {16}, torch::kLong);
          if (fused_path) {
            return (*fused)(x, t, e);
          }
          return (net->forward(x, t) - e).square().mean();
        },
        sbgm::TrainerOptions(15)
            .ema_decay(0)
            .log_every(5)
            .progress(sbgm::ProgressMode::Off)
            .loss_fn_computes_grads(flag));
    trainer.run();
    std::vector<torch::Tensor> out;
    for (const auto& p : net->parameters()) {
      out.push_back(p.detach().clone());
    }
    return out;
  };
  const auto a = run(false, false);
  const auto b = run(true, true);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_LT(sbgm::test::max_abs_diff(a[i], b[i]), 1e-10) << "parameter " << i;
  }
  EXPECT_THROW_MSG(run(true, false), "does not require grad");
  EXPECT_THROW_MSG(run(false, true), "loss_fn_computes_grads is set");
}

}  // namespace

namespace {

// A time shared by the batch (0-dim, or expanded with stride 0 as the
// samplers pass it) takes the folded-bias path; it must give what the same
// time written out per sample gives, for each embedding kind, and gradients.
TEST(MLPSharedTime, FoldedBiasPathMatchesPerSampleTimes) {
  for (auto kind :
       {sbgm::TimeEmbeddingKind::Learned,
        sbgm::TimeEmbeddingKind::Sinusoidal,
        sbgm::TimeEmbeddingKind::Fourier}) {
    torch::manual_seed(2);
    auto opts = MLPOptions(2).hidden(16).embedding(kind);
    const bool learned = kind == sbgm::TimeEmbeddingKind::Learned;
    if (learned) {
      opts.num_timesteps(9);
    }
    MLP net(opts);
    net->to(torch::kDouble);
    const auto x = torch::randn({7, 2}, torch::kDouble);
    const auto one = learned ? torch::full({1}, 4, torch::kLong)
                             : torch::full({1}, 0.3, torch::kDouble);
    const auto full = one.repeat({7});
    const auto ref = net->forward(x, full);
    EXPECT_LT(
        sbgm::test::max_abs_diff(net->forward(x, one.expand({7})), ref), 1e-12);
    EXPECT_LT(
        sbgm::test::max_abs_diff(net->forward(x, one.squeeze(0)), ref), 1e-12);
    {
      c10::InferenceMode guard;
      EXPECT_LT(
          sbgm::test::max_abs_diff(net->forward(x, one.expand({7})), ref),
          1e-12);
    }
    // Gradients through the folded path equal those of the per-sample path.
    auto grads = [&](const torch::Tensor& t) {
      for (auto& p : net->parameters()) {
        p.mutable_grad() = torch::Tensor();
      }
      net->forward(x, t).square().sum().backward();
      std::vector<torch::Tensor> g;
      for (auto& p : net->parameters()) {
        g.push_back(
            p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
      }
      return g;
    };
    const auto ga = grads(full), gb = grads(one.expand({7}));
    for (size_t i = 0; i < ga.size(); ++i) {
      EXPECT_LT(sbgm::test::max_abs_diff(ga[i], gb[i]), 1e-12)
          << "parameter " << i;
    }
  }
}

}  // namespace
