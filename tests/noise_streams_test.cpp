#include <gtest/gtest.h>
#include <sbgm/nets/mlp.h>
#include <sbgm/processes/discrete.h>
#include <sbgm/processes/edm.h>
#include <sbgm/processes/ve.h>
#include <sbgm/processes/vp.h>
#include <sbgm/random.h>
#include <sbgm/samplers/samplers.h>
#include <sbgm/schedule.h>
#include <torch/torch.h>

#include "support.h"

namespace sbgm::samplers {
namespace {

class NoiseStreamsTest : public test::SeededTest {};

// A network that treats samples independently, with non-trivial weights.
MLP random_mlp() {
  MLP net(MLPOptions(2)
              .hidden(32)
              .depth(2)
              .embedding(TimeEmbeddingKind::Sinusoidal)
              .time_scale(100.0));
  net->eval();
  return net;
}

// n samples drawn in batches of `batch`, each batch told where it starts.
torch::Tensor in_batches(
    const Model& model,
    const NoiseProcess& process,
    SampleOptions options,
    int64_t n,
    int64_t batch) {
  std::vector<torch::Tensor> parts;
  for (int64_t first = 0; first < n; first += batch) {
    options.common().first_sample(first);
    parts.push_back(sample(model, process, {batch, 2}, options).samples);
  }
  return torch::cat(parts);
}

TEST_F(NoiseStreamsTest, EverySamplerIsBatchInvariantWithPerSampleStreams) {
  const Model model(random_mlp(), Prediction::Epsilon);
  VPSDE vp;
  for (const auto& name : sampler_names()) {
    auto o = SampleOptions().sampler(name).steps(6);
    o.common().per_sample_seed(11);
    if (name == "dopri5") {
      // Its adaptive steps are chosen for the whole batch: the samples
      // agree to the float32 solve's accuracy only (4e-4 measured), the
      // starting states exactly.
      o.set("rtol", 1e-8).set("atol", 1e-8).common().trajectory_every(1000);
    }
    const auto whole = in_batches(model, vp, o, 64, 64);
    const auto by8 = in_batches(model, vp, o, 64, 8);
    const auto by16 = in_batches(model, vp, o, 64, 16);
    if (name == "dopri5") {
      EXPECT_TRUE(test::all_close(whole, by8, 2e-3, 2e-3)) << name;
      EXPECT_TRUE(test::all_close(whole, by16, 2e-3, 2e-3)) << name;
      auto start = [&](int64_t batch) {
        std::vector<torch::Tensor> parts;
        for (int64_t first = 0; first < 64; first += batch) {
          o.common().first_sample(first);
          parts.push_back(sample(model, vp, {batch, 2}, o).trajectory.front());
        }
        return torch::cat(parts);
      };
      EXPECT_TRUE(torch::equal(start(64), start(8)));
    } else {
      EXPECT_TRUE(torch::equal(whole, by8))
          << name << ": max diff " << test::max_abs_diff(whole, by8);
      EXPECT_TRUE(torch::equal(whole, by16))
          << name << ": max diff " << test::max_abs_diff(whole, by16);
    }
    // The samples differ from each other and depend on the seed.
    EXPECT_FALSE(torch::equal(whole.slice(0, 0, 32), whole.slice(0, 32, 64)))
        << name;
    o.common().per_sample_seed(12);
    EXPECT_FALSE(torch::equal(whole, in_batches(model, vp, o, 64, 64))) << name;
  }
}

TEST_F(NoiseStreamsTest, DiscreteAncestralSamplerIsBatchInvariant) {
  MLP net(MLPOptions(2).hidden(16).num_timesteps(40));
  {
    torch::NoGradGuard g;
    for (auto& p : net->parameters()) {
      p.normal_(0.0, 0.3);
    }
  }
  const Model model(net, Prediction::Epsilon);
  DiscreteProcess process(Schedule::linear(40, 1e-3, 0.2));
  auto o = SampleOptions().sampler("ddpm");
  o.common().per_sample_seed(3);
  const auto whole = in_batches(model, process, o, 48, 48);
  EXPECT_TRUE(torch::equal(whole, in_batches(model, process, o, 48, 8)));
  EXPECT_TRUE(torch::equal(whole, in_batches(model, process, o, 48, 16)));
}

TEST_F(NoiseStreamsTest, StreamsDependOnSeedIndexAndStreamOnly) {
  CommonOptions c;
  c.per_sample_seed(5).first_sample(3);
  NoiseSource a(c, 1), b(c, 1), start(c, 0);
  EXPECT_TRUE(a.per_sample());
  auto x = a.randn({4, 20}, torch::kFloat);
  EXPECT_TRUE(torch::equal(x, b.randn({4, 20}, torch::kFloat)));
  // Sample 3 + 1 of this source is sample 1 + 3 of one that starts at 1.
  CommonOptions c1;
  c1.per_sample_seed(5).first_sample(1);
  NoiseSource d(c1, 1);
  EXPECT_TRUE(torch::equal(x[1], d.randn({6, 20}, torch::kFloat)[3]));
  // The starting draw is a stream of its own; a source continues its
  // streams from draw to draw.
  EXPECT_FALSE(torch::equal(x, start.randn({4, 20}, torch::kFloat)));
  EXPECT_FALSE(torch::equal(x, a.randn({4, 20}, torch::kFloat)));
  // Roughly standard normal.
  auto big = NoiseSource(c, 2).randn({200, 500}, torch::kDouble);
  EXPECT_NEAR(big.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(big.std().item<double>(), 1.0, 0.01);
  EXPECT_THROW_MSG(
      a.randn({5, 20}, torch::kFloat), "batch changed from 4 to 5");
}

TEST_F(NoiseStreamsTest, WithoutPerSampleStreamsTheGeneratorIsUsedAsBefore) {
  CommonOptions c;
  c.generator(make_generator(9));
  NoiseSource s(c);
  EXPECT_FALSE(s.per_sample());
  const auto x = s.randn({3, 4}, torch::kFloat);
  EXPECT_TRUE(
      torch::equal(x, torch::randn({3, 4}, make_generator(9), torch::kFloat)));
}

TEST_F(NoiseStreamsTest, ModelSeesChunksOfModelBatchSamples) {
  std::vector<int64_t> sizes;
  const Model model(
      [&](const torch::Tensor& x, const torch::Tensor& t) {
        sizes.push_back(x.size(0));
        EXPECT_EQ(t.size(0), x.size(0));
        return x * 2 + t.unsqueeze(1).to(x.dtype());
      },
      Prediction::Epsilon);
  CommonOptions c;
  EXPECT_EQ(c.model_batch(), 64);
  // Without per-sample streams the model is called as it is.
  const auto x = torch::randn({10, 2});
  const auto t = torch::arange(10).to(torch::kFloat);
  batch_invariant_model(model, c)(x, t);
  EXPECT_EQ(sizes, (std::vector<int64_t>{10}));
  sizes.clear();
  c.per_sample_seed(0).model_batch(4).first_sample(6);
  const auto chunked = batch_invariant_model(model, c);
  // Samples 6..15 in calls of 4 rows: 6-7 at rows 2-3, 8-11, 12-15.
  EXPECT_TRUE(torch::equal(chunked(x, t), x * 2 + t.unsqueeze(1)));
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 4}));
  sizes.clear();
  // A shared (stride-0) time stays shared.
  const auto shared = torch::full({1}, 3.0).expand({10});
  const Model check_shared(
      [&](const torch::Tensor& x, const torch::Tensor& t) {
        EXPECT_EQ(t.stride(0), 0);
        return x * 2 + t.unsqueeze(1);
      },
      Prediction::Epsilon);
  EXPECT_TRUE(torch::equal(
      batch_invariant_model(check_shared, c)(x, shared), x * 2 + 3.0));
  c.model_batch(0);
  EXPECT_THROW_MSG(
      batch_invariant_model(model, c), "model_batch must be >= 1, got 0");
}

TEST_F(NoiseStreamsTest, BadOptionsAreRefused) {
  const Model model(random_mlp(), Prediction::Epsilon);
  VPSDE vp;
  auto o = SampleOptions().sampler("ddim").steps(3);
  o.common().per_sample_seed(1).first_sample(-2);
  EXPECT_THROW_MSG(
      sample(model, vp, {4, 2}, o), "first_sample must be >= 0, got -2");
  o.common().first_sample(0).cuda_graph(true);
  EXPECT_THROW_MSG(
      sample(model, vp, {4, 2}, o),
      "cuda_graph cannot be combined with per_sample_seed");
}

}  // namespace
}  // namespace sbgm::samplers
