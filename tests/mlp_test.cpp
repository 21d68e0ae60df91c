// Time embeddings and the time-conditioned MLP.

#include "sbgm/nets/mlp.h"

#include <cmath>

#include "sbgm/nets/embedding.h"
#include "support.h"

namespace sbgm {
namespace {

using test::all_close;

class NetsEmbedding : public test::SeededTest {};

TEST_F(NetsEmbedding, LearnedIsATableLookup) {
  TimeEmbedding emb(
      TimeEmbeddingOptions(TimeEmbeddingKind::Learned, 6).num_timesteps(10));
  auto t = torch::tensor({0, 3, 9, 3}, torch::kLong);
  auto out = emb(t);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{4, 6}));
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(torch::equal(out[i], emb->table->weight[t[i].item<int64_t>()]));
  }
  // A 0-dim t gives one row.
  EXPECT_EQ(
      emb(torch::tensor(int64_t{2})).sizes(), (std::vector<int64_t>{1, 6}));
}

TEST_F(NetsEmbedding, SinusoidalMatchesClosedForm) {
  const int64_t dim = 8, half = dim / 2;
  const double scale = 3.0, period = 100.0;
  TimeEmbedding emb(TimeEmbeddingOptions(TimeEmbeddingKind::Sinusoidal, dim)
                        .max_period(period)
                        .time_scale(scale));
  const std::vector<double> ts = {0.0, 0.25, 1.0, 7.5};
  auto out = emb(torch::tensor(ts, torch::kDouble));
  ASSERT_EQ(out.scalar_type(), torch::kDouble);
  auto want = torch::empty({4, dim}, torch::kDouble);
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      const double f = std::pow(period, -static_cast<double>(j) / half);
      want[i][j] = std::sin(scale * ts[i] * f);
      want[i][j + half] = std::cos(scale * ts[i] * f);
    }
  }
  EXPECT_TRUE(all_close(out, want, 1e-12, 1e-12));
  // Integer steps are cast to the default dtype.
  auto outi = emb(torch::tensor({1, 2}, torch::kLong));
  EXPECT_EQ(outi.scalar_type(), torch::kFloat);
  for (int64_t j = 0; j < half; ++j) {
    const double f = std::pow(period, -static_cast<double>(j) / half);
    EXPECT_NEAR(outi[1][j].item<double>(), std::sin(scale * 2.0 * f), 1e-6);
    EXPECT_NEAR(
        outi[1][j + half].item<double>(), std::cos(scale * 2.0 * f), 1e-6);
  }
}

TEST_F(NetsEmbedding, FourierMatchesClosedForm) {
  const int64_t dim = 6, half = dim / 2;
  TimeEmbedding emb(TimeEmbeddingOptions(TimeEmbeddingKind::Fourier, dim)
                        .fourier_scale(2.0)
                        .time_scale(0.5));
  ASSERT_EQ(emb->W.sizes(), (std::vector<int64_t>{half}));
  // W is a buffer, not a parameter.
  EXPECT_EQ(emb->parameters().size(), 0u);
  EXPECT_EQ(emb->buffers().size(), 1u);
  auto W = emb->W.to(torch::kDouble);
  const std::vector<double> ts = {0.0, 0.1, 0.9};
  auto out = emb(torch::tensor(ts, torch::kFloat));
  auto want = torch::empty({3, dim}, torch::kDouble);
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      const double a = 2.0 * M_PI * W[j].item<double>() * 0.5 * ts[i];
      want[i][j] = std::sin(a);
      want[i][j + half] = std::cos(a);
    }
  }
  EXPECT_TRUE(all_close(out, want, 1e-5, 1e-5));
}

TEST_F(NetsEmbedding, FourierFrequenciesHaveTheRequestedScale) {
  TimeEmbedding emb(TimeEmbeddingOptions(TimeEmbeddingKind::Fourier, 20000)
                        .fourier_scale(16.0));
  const double sd = emb->W.std().item<double>();
  EXPECT_NEAR(sd, 16.0, 16.0 * 0.05);
}

TEST_F(NetsEmbedding, KindNamesRoundTrip) {
  for (auto k :
       {TimeEmbeddingKind::Learned,
        TimeEmbeddingKind::Sinusoidal,
        TimeEmbeddingKind::Fourier}) {
    EXPECT_EQ(time_embedding_kind_from_string(to_string(k)), k);
  }
  EXPECT_THROW_MSG(time_embedding_kind_from_string("fancy"), "'fancy'");
}

TEST_F(NetsEmbedding, RejectsBadInput) {
  EXPECT_THROW_MSG(
      TimeEmbedding(TimeEmbeddingKind::Sinusoidal, 0), "dim must be > 0");
  EXPECT_THROW_MSG(
      TimeEmbedding(TimeEmbeddingKind::Sinusoidal, 5), "even dim, got 5");
  EXPECT_THROW_MSG(
      TimeEmbedding(TimeEmbeddingKind::Learned, 4), "num_timesteps > 0");
  EXPECT_THROW_MSG(
      TimeEmbedding(TimeEmbeddingOptions(TimeEmbeddingKind::Fourier, 4)
                        .fourier_scale(-1)),
      "fourier_scale must be > 0");
  EXPECT_THROW_MSG(
      TimeEmbedding(
          TimeEmbeddingOptions(TimeEmbeddingKind::Sinusoidal, 4).time_scale(0)),
      "time_scale must be > 0");
  EXPECT_THROW_MSG(
      TimeEmbedding(
          TimeEmbeddingOptions(TimeEmbeddingKind::Sinusoidal, 4).max_period(1)),
      "max_period must be > 1");
  TimeEmbedding learned(
      TimeEmbeddingOptions(TimeEmbeddingKind::Learned, 4).num_timesteps(5));
  EXPECT_THROW_MSG(learned(torch::tensor({0.5})), "integer step indices");
  EXPECT_THROW_MSG(learned(torch::tensor({0, 5})), "got values in [0, 5]");
  EXPECT_THROW_MSG(learned(torch::tensor({-1, 2})), "[0, 5)");
  EXPECT_THROW_MSG(learned(torch::zeros({2, 2}, torch::kLong)), "[2, 2]");
  EXPECT_THROW_MSG(learned(torch::Tensor()), "undefined");
  TimeEmbedding sin(TimeEmbeddingKind::Sinusoidal, 4);
  EXPECT_THROW_MSG(sin(torch::tensor({true})), "integer or floating");
}

// h_l = act(W_l h + b_l + e_l(t)), out = W_o h + b_o, computed in float64
// from the module's own weights.
torch::Tensor mlp_by_hand(
    MLP& net, const torch::Tensor& x, const torch::Tensor& t) {
  const auto& o = net->options;
  const bool learned = o.embedding() == TimeEmbeddingKind::Learned;
  auto h = x.to(torch::kDouble);
  torch::Tensor shared;
  if (!learned) {
    shared = net->time_embedding->forward(t).to(torch::kDouble);
  }
  for (size_t l = 0; l < net->layers->size(); ++l) {
    auto lin = net->layers[l]->as<torch::nn::Linear>();
    auto z = torch::matmul(h, lin->weight.to(torch::kDouble).t()) +
             lin->bias.to(torch::kDouble);
    torch::Tensor e;
    if (learned) {
      e = net->embeddings[l]
              ->as<TimeEmbedding>()
              ->table->weight.index_select(0, t)
              .to(torch::kDouble);
    } else {
      auto p = net->embeddings[l]->as<torch::nn::Linear>();
      e = torch::matmul(shared, p->weight.to(torch::kDouble).t()) +
          p->bias.to(torch::kDouble);
    }
    h = apply_activation(o.activation(), z + e);
  }
  return torch::matmul(h, net->out->weight.to(torch::kDouble).t()) +
         net->out->bias.to(torch::kDouble);
}

class NetsMLP : public test::DeviceTest {};

TEST_P(NetsMLP, ShapesAndGradientsForEveryEmbeddingKind) {
  for (auto kind :
       {TimeEmbeddingKind::Learned,
        TimeEmbeddingKind::Sinusoidal,
        TimeEmbeddingKind::Fourier}) {
    SCOPED_TRACE(to_string(kind));
    MLP net(MLPOptions(3)
                .hidden(16)
                .depth(2)
                .embedding(kind)
                .num_timesteps(10)
                .activation(Activation::SiLU));
    net->to(device());
    const int64_t n = 64;
    auto x = torch::randn({n, 3}, f32());
    auto t = kind == TimeEmbeddingKind::Learned
                 ? torch::arange(
                       n, torch::TensorOptions(torch::kLong).device(device()))
                       .remainder(10)
                 : torch::rand({n}, f32());
    auto y = net(x, t);
    ASSERT_EQ(y.sizes(), x.sizes());
    ASSERT_EQ(y.device(), x.device());
    y.square().sum().backward();
    for (const auto& p : net->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_EQ(p.value().grad().sizes(), p.value().sizes()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
    }
    // x gradients too.
    auto xg = x.clone().requires_grad_(true);
    net(xg, t).sum().backward();
    EXPECT_EQ(xg.grad().sizes(), x.sizes());
  }
}

SBGM_INSTANTIATE_DEVICES(NetsMLP);

class NetsMLPCpu : public test::SeededTest {};

TEST_F(NetsMLPCpu, SeedArchitecture) {
  // 64 hidden units, three layers, a learned 150 x 64 table per layer.
  MLP net(MLPOptions(2).num_timesteps(150));
  int64_t count = 0;
  for (const auto& p : net->parameters()) {
    count += p.numel();
  }
  const int64_t want =
      (2 * 64 + 64) + 2 * (64 * 64 + 64) + 3 * 150 * 64 + (64 * 2 + 2);
  EXPECT_EQ(count, want);
  EXPECT_EQ(net->layers->size(), 3u);
  auto x = torch::randn({32, 2});
  auto t = torch::randint(0, 150, {32}, torch::kLong);
  EXPECT_TRUE(all_close(net(x, t), mlp_by_hand(net, x, t), 1e-5, 1e-5));
}

TEST_F(NetsMLPCpu, ForwardMatchesHandComputation) {
  for (auto kind :
       {TimeEmbeddingKind::Sinusoidal, TimeEmbeddingKind::Fourier}) {
    for (auto act :
         {Activation::ReLU,
          Activation::GELU,
          Activation::Softplus,
          Activation::Tanh}) {
      SCOPED_TRACE(to_string(kind) + "/" + to_string(act));
      MLP net(MLPOptions(2)
                  .hidden(12)
                  .depth(3)
                  .embedding(kind)
                  .embedding_dim(8)
                  .activation(act));
      auto x = torch::randn({5, 2});
      auto t = torch::rand({5});
      EXPECT_TRUE(all_close(net(x, t), mlp_by_hand(net, x, t), 1e-5, 1e-5));
      // A 0-dim t is used for every sample.
      auto t0 = torch::tensor(0.3f);
      EXPECT_TRUE(all_close(
          net(x, t0), mlp_by_hand(net, x, t0.expand({5})), 1e-5, 1e-5));
    }
  }
}

TEST_F(NetsMLPCpu, ActivationNamesRoundTrip) {
  for (auto a :
       {Activation::ReLU,
        Activation::SiLU,
        Activation::GELU,
        Activation::Softplus,
        Activation::Tanh}) {
    EXPECT_EQ(activation_from_string(to_string(a)), a);
  }
  EXPECT_THROW_MSG(activation_from_string("swish"), "'swish'");
  auto x = torch::tensor({-1.0, 0.5});
  EXPECT_TRUE(all_close(
      apply_activation(Activation::ReLU, x), torch::tensor({0.0, 0.5})));
  EXPECT_TRUE(all_close(
      apply_activation(Activation::Softplus, x),
      torch::tensor({std::log1p(std::exp(-1.0)), std::log1p(std::exp(0.5))})));
}

TEST_F(NetsMLPCpu, RejectsBadInput) {
  EXPECT_THROW_MSG(
      MLP(MLPOptions(0).num_timesteps(3)), "input_dim must be > 0");
  EXPECT_THROW_MSG(
      MLP(MLPOptions(2).hidden(0).num_timesteps(3)), "hidden must be > 0");
  EXPECT_THROW_MSG(
      MLP(MLPOptions(2).depth(0).num_timesteps(3)), "depth must be > 0");
  EXPECT_THROW_MSG(MLP(MLPOptions(2)), "num_timesteps > 0");
  EXPECT_THROW_MSG(
      MLP(MLPOptions(2)
              .embedding(TimeEmbeddingKind::Sinusoidal)
              .embedding_dim(-2)),
      "embedding_dim must be >= 0");
  MLP net(MLPOptions(2).num_timesteps(10));
  auto t = torch::zeros({4}, torch::kLong);
  EXPECT_THROW_MSG(net(torch::randn({4, 3}), t), "[4, 3]");
  EXPECT_THROW_MSG(net(torch::randn({4}), t), "[N, 2]");
  EXPECT_THROW_MSG(net(torch::zeros({4, 2}, torch::kLong), t), "x");
  EXPECT_THROW_MSG(
      net(torch::randn({4, 2}), torch::zeros({3}, torch::kLong)), "3");
  EXPECT_THROW_MSG(net(torch::randn({4, 2}), torch::rand({4})), "t");
  EXPECT_THROW_MSG(net(torch::randn({4, 2}), torch::Tensor()), "undefined");
  EXPECT_THROW_MSG(
      net(torch::randn({4, 2}), torch::full({4}, 10, torch::kLong)), "[0, 10)");
}

}  // namespace
}  // namespace sbgm
