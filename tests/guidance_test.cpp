// Conditional models and classifier-free guidance: the model contract's
// condition, class-conditional MLP and U-Net, the guidance algebra on exact
// mixtures whose components are the classes, condition dropout, and errors.

#include "sbgm/guidance.h"

#include <ATen/record_function.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "mixture_check.h"
#include "sbgm/gmm.h"
#include "sbgm/losses.h"
#include "sbgm/model.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/nets/unet.h"
#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
#include "sbgm/random.h"
#include "sbgm/samplers/samplers.h"
#include "support.h"

namespace ss = sbgm::samplers;
using sbgm::GaussianMixture;
using sbgm::GuidanceOptions;
using sbgm::Model;
using sbgm::Prediction;

namespace {

GaussianMixture mixture() {
  return GaussianMixture(
      torch::tensor({0.2, 0.3, 0.5}, torch::kDouble),
      torch::tensor({{-2.0, 0.0}, {2.0, 0.0}, {0.0, 2.5}}, torch::kDouble),
      torch::tensor({0.3, 0.4, 0.35}, torch::kDouble));
}

GaussianMixture component(const GaussianMixture& g, int64_t k) {
  return GaussianMixture(
      torch::ones({1}, torch::kDouble),
      g.means().slice(0, k, k + 1),
      g.stds().slice(0, k, k + 1));
}

torch::Tensor labels(int64_t n, int64_t k) {
  return torch::full({n}, k, torch::kLong);
}

// A float64 U-Net with random class embeddings (they start at zero).
sbgm::UNet class_unet(
    bool up_path_only,
    std::vector<int64_t> channels = {8, 16},
    int64_t groups = 4) {
  torch::manual_seed(3);
  sbgm::UNet net(sbgm::UNetOptions(1)
                     .channels(std::move(channels))
                     .groups(groups)
                     .num_classes(10)
                     .class_up_path_only(up_path_only));
  net->to(torch::kDouble);
  torch::NoGradGuard ng;
  for (auto& p : net->named_parameters()) {
    if (p.key().find("class_embed") != std::string::npos) {
      p.value().normal_();
    }
  }
  net->eval();
  return net;
}

// Whether a RecordFunction observer may read the inputs: without NDEBUG
// (the sanitizer build) RecordFunction::inputs() reads a debug-only member
// that LibTorch's release build does not have.
#ifdef NDEBUG
constexpr bool kCanObserveInputs = true;
#else
constexpr bool kCanObserveInputs = false;
#endif

// The batch size of every convolution run while `fn` runs (a RecordFunction
// observer on aten::convolution); empty where kCanObserveInputs is false.
std::vector<int64_t> conv_batches(const std::function<void()>& fn) {
  if (!kCanObserveInputs) {
    fn();
    return {};
  }
  static thread_local std::vector<int64_t>* seen = nullptr;
  std::vector<int64_t> batches;
  seen = &batches;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(
          [](const at::RecordFunction& f)
              -> std::unique_ptr<at::ObserverContext> {
            if (std::string(f.name()) == "aten::convolution") {
              seen->push_back(f.inputs()[0].toTensor().size(0));
            }
            return nullptr;
          })
          .needsInputs(true));
  fn();
  at::removeCallback(handle);
  seen = nullptr;
  return batches;
}

}  // namespace

TEST(ConditionalModel, PassesItsConditionToEveryCall) {
  auto seen = std::make_shared<torch::Tensor>();
  auto m = Model::conditional(
      [seen](
          const torch::Tensor& x,
          const torch::Tensor&,
          const torch::Tensor& c) {
        *seen = c;
        return c.defined() ? x + c.to(x.scalar_type()).view({-1, 1}) : x;
      },
      Prediction::Epsilon);
  EXPECT_TRUE(m.is_conditional());
  const auto x = torch::zeros({3, 2});
  const auto t = torch::full({3}, 0.5);
  EXPECT_FALSE(m(x, t).any().item<bool>());  // no condition
  EXPECT_FALSE(seen->defined());
  auto m7 = m.with_condition(torch::tensor({7, 8, 9}));
  EXPECT_TRUE(
      torch::equal(m7(x, t).select(1, 1), torch::tensor({7.f, 8.f, 9.f})));
  EXPECT_TRUE(torch::equal(*seen, m7.condition()));
  // The explicit form overrides the carried condition.
  EXPECT_TRUE(torch::equal(
      m7(x, t, torch::tensor({1, 1, 1})).select(1, 0), torch::ones({3})));
  // Losses take it through: a conditional model trains like any other.
  auto loss = sbgm::diffusion_loss(
      m7, sbgm::VPSDE(), torch::zeros({3, 2}), sbgm::LossOptions());
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
}

TEST(ConditionalModel, Errors) {
  auto cm = mixture().conditional_model(std::make_shared<sbgm::VPSDE>());
  const auto x = torch::zeros({4, 2}, torch::kDouble);
  const auto t = torch::full({4}, 0.5, torch::kDouble);
  EXPECT_THROW_MSG(
      cm.with_condition(labels(3, 0))(x, t),
      "the condition has shape [3] for a batch of shape [4, 2]");
  EXPECT_THROW_MSG(cm.with_condition(torch::tensor(1)), "got a 0-dim tensor");
  EXPECT_THROW_MSG(
      cm.with_condition(labels(4, 4))(x, t),
      "class labels must lie in [0, 3] (3: no class), got values in [4, 4]");
  EXPECT_THROW_MSG(
      cm.with_condition(torch::full({4}, 1.0))(x, t),
      "takes integer class indices, got a condition of dtype Float");
  auto plain = mixture().model(std::make_shared<sbgm::VPSDE>());
  EXPECT_FALSE(plain.is_conditional());
  EXPECT_THROW_MSG(plain.with_condition(labels(4, 0)), "takes no condition");
  EXPECT_THROW_MSG(plain(x, t, labels(4, 0)), "unconditional");
  EXPECT_THROW_MSG(
      sbgm::classifier_free_guidance(plain, 2.0),
      "the model is not conditional");
  EXPECT_THROW_MSG(
      sbgm::classifier_free_guidance(cm, GuidanceOptions(2.0).rescale(1.5)),
      "rescale must lie in [0, 1], got 1.5");
  EXPECT_THROW_MSG(
      sbgm::classifier_free_guidance(cm, std::nan("")), "must be finite");
  // Integer labels cannot be batched without the null label.
  EXPECT_THROW_MSG(
      sbgm::classifier_free_guidance(cm, 2.0).with_condition(labels(4, 0))(
          x, t),
      "need GuidanceOptions::null_class");
}

// w = 0 is the unconditional model and w = 1 the conditional one, exactly;
// other scales mix the halves of one batched call.
TEST(Guidance, ScalesZeroAndOneAreExact) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  const auto g = mixture();
  for (auto pred : {Prediction::Epsilon, Prediction::X0, Prediction::V}) {
    auto cm = g.conditional_model(vp, pred);
    auto mix = g.model(vp, pred);
    const auto x = torch::randn({6, 2}, torch::kDouble);
    const auto t = torch::full({6}, 0.4, torch::kDouble);
    const auto c = torch::tensor({0, 1, 2, 0, 1, 2});
    auto guided = [&](double w) {
      return sbgm::classifier_free_guidance(
          cm, GuidanceOptions(w).null_class(3))(x, t, c);
    };
    EXPECT_TRUE(torch::equal(guided(0), mix(x, t)));
    EXPECT_TRUE(torch::equal(guided(1), cm(x, t, c)));
    // Component k's own exact model, per row.
    for (int64_t k = 0; k < 3; ++k) {
      auto rows = torch::tensor({k, k + 3});
      EXPECT_TRUE(sbgm::test::all_close(
          guided(1).index_select(0, rows),
          component(g, k).model(vp, pred)(x, t).index_select(0, rows),
          1e-12,
          1e-12));
    }
    const auto u = mix(x, t), k = cm(x, t, c);
    EXPECT_TRUE(
        sbgm::test::all_close(guided(3), u + 3 * (k - u), 1e-12, 1e-12));
    EXPECT_TRUE(
        sbgm::test::all_close(guided(-0.5), u - 0.5 * (k - u), 1e-12, 1e-12));
    // No condition: the unconditional model whatever the scale.
    EXPECT_TRUE(torch::equal(
        sbgm::classifier_free_guidance(cm, GuidanceOptions(3).null_class(3))(
            x, t),
        u));
  }
}

TEST(Guidance, RescaleMatchesTheConditionalStd) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto cm = mixture().conditional_model(vp, Prediction::Epsilon);
  const auto x = torch::randn({5, 2}, torch::kDouble) * 2;
  const auto t = torch::full({5}, 0.3, torch::kDouble);
  const auto c = torch::tensor({0, 1, 2, 1, 0});
  auto opts = GuidanceOptions(4).null_class(3);
  auto plain = sbgm::classifier_free_guidance(cm, opts)(x, t, c);
  auto full = sbgm::classifier_free_guidance(cm, opts.rescale(1))(x, t, c);
  auto half = sbgm::classifier_free_guidance(cm, opts.rescale(0.5))(x, t, c);
  auto cond = cm(x, t, c);
  EXPECT_TRUE(sbgm::test::all_close(full.std(1), cond.std(1), 1e-12, 1e-12));
  EXPECT_TRUE(sbgm::test::all_close(
      full, plain * (cond.std(1) / plain.std(1)).view({-1, 1}), 1e-12, 1e-12));
  EXPECT_TRUE(
      sbgm::test::all_close(half, 0.5 * full + 0.5 * plain, 1e-12, 1e-12));
}

// Every sampler passes the condition through: guided at w = 1, class k
// comes out as component k; without a condition, the mixture.
TEST(Guidance, EverySamplerDrawsTheRequestedComponent) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  const auto g = mixture();
  auto guided = sbgm::classifier_free_guidance(
      g.conditional_model(vp, Prediction::Epsilon),
      GuidanceOptions(1).null_class(3));
  const int64_t n = 2000;
  struct Case {
    std::string sampler;
    int64_t steps;
    double bias;
  };
  for (const auto& c : std::vector<Case>{
           {"ddpm", 500, 0.02},
           {"ddim", 100, 0.02},
           {"em", 500, 0.03},
           {"pc", 250, 0.03},
           {"euler_ancestral", 200, 0.03},
           {"heun", 30, 0.02},
           {"dpmpp_2m", 50, 0.02},
           {"dpmpp_3m", 50, 0.02},
           {"dpmpp_2m_sde", 200, 0.03}}) {
    SCOPED_TRACE(c.sampler);
    const int64_t k = c.sampler.size() % 3;  // a mix of components
    auto opts = ss::SampleOptions().sampler(c.sampler).steps(c.steps);
    opts.common().generator(sbgm::make_generator(5)).dtype(torch::kDouble);
    auto res =
        ss::sample(guided.with_condition(labels(n, k)), *vp, {n, 2}, opts);
    sbgm::test::check_samples(res.samples, component(g, k), c.bias);
  }
  auto opts = ss::SampleOptions().sampler("dpmpp_2m").steps(50);
  opts.common().generator(sbgm::make_generator(6)).dtype(torch::kDouble);
  sbgm::test::check_samples(
      ss::sample(guided, *vp, {n, 2}, opts).samples, g, 0.03);
}

TEST(Guidance, DropConditionRate) {
  const int64_t n = 200000;
  auto dropped = sbgm::drop_condition(
      torch::randint(10, {n}, torch::kLong), 0.1, 10, sbgm::make_generator(3));
  const double frac = (dropped == 10).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(frac, 0.1, 4 * std::sqrt(0.1 * 0.9 / n));
  EXPECT_EQ((dropped > 10).sum().item<int64_t>(), 0);
  auto rows = sbgm::drop_condition(
      torch::ones({n, 3}), 0.25, -1, sbgm::make_generator(4));
  const double zero =
      (rows.sum(1) == 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(zero, 0.25, 4 * std::sqrt(0.25 * 0.75 / n));
  EXPECT_TRUE(((rows.sum(1) == 0) | (rows.sum(1) == 3)).all().item<bool>());
  EXPECT_TRUE(
      torch::equal(sbgm::drop_condition(labels(5, 2), 0, 9), labels(5, 2)));
  EXPECT_TRUE(
      torch::equal(sbgm::drop_condition(labels(5, 2), 1, 9), labels(5, 9)));
  EXPECT_THROW_MSG(
      sbgm::drop_condition(labels(5, 2), 1.5, 9),
      "p must lie in [0, 1], got 1.5");
  EXPECT_THROW_MSG(
      sbgm::drop_condition(labels(5, 2), 0.1, -1), "null_class must be >= 0");
}

TEST(ConditionalNets, MLPEmbedsClassesAndDropsThemInTraining) {
  torch::manual_seed(0);
  sbgm::MLP net(sbgm::MLPOptions(2)
                    .embedding(sbgm::TimeEmbeddingKind::Sinusoidal)
                    .num_classes(4)
                    .class_dropout(0.3));
  {
    torch::NoGradGuard ng;
    for (auto& e : *net->class_embeddings) {
      e->as<torch::nn::Embedding>()->weight.normal_();
    }
  }
  net->eval();
  const int64_t n = 20000;
  const auto x = torch::randn({n, 2});
  const auto t = torch::rand({n});
  const auto c = torch::randint(4, {n}, torch::kLong);
  auto cond = net->forward(x, t, c);
  auto none = net->forward(x, t);
  EXPECT_TRUE(torch::equal(none, net->forward(x, t, labels(n, 4))));
  EXPECT_GT((cond - none).abs().max().item<double>(), 1e-3);
  // Training mode: 30% of the rows see the null class.
  net->train();
  auto train_out = net->forward(x, t, c);
  auto is_null = ((train_out - none).abs().amax(1) < 1e-6);
  const double frac = is_null.to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(frac, 0.3, 4 * std::sqrt(0.3 * 0.7 / n));
  auto kept = is_null.logical_not();
  EXPECT_TRUE(
      torch::allclose(train_out.index({kept}), cond.index({kept}), 1e-6, 1e-6));
  // A Model made from it is conditional.
  EXPECT_TRUE(Model(net, Prediction::Epsilon).is_conditional());
  EXPECT_FALSE(
      Model(
          sbgm::MLP(sbgm::MLPOptions(2).num_timesteps(3)), Prediction::Epsilon)
          .is_conditional());
  // Errors name the value.
  EXPECT_THROW_MSG(
      net->forward(
          x.slice(0, 0, 3), t.slice(0, 0, 3), torch::tensor({0, 5, 1})),
      "class labels must lie in [0, 4] (4: no class), got values in [0, 5]");
  EXPECT_THROW_MSG(
      net->forward(x.slice(0, 0, 3), t.slice(0, 0, 3), torch::ones({3})),
      "MLP: a class embedding takes integer class indices");
  EXPECT_THROW_MSG(
      net->forward(x.slice(0, 0, 3), t.slice(0, 0, 3), labels(2, 0)),
      "class labels must have shape [3] (one per sample), got [2]");
  sbgm::MLP plain(sbgm::MLPOptions(2).num_timesteps(3));
  EXPECT_THROW_MSG(
      plain->forward(
          x.slice(0, 0, 2), torch::zeros({2}, torch::kLong), labels(2, 0)),
      "net built with num_classes = 0");
  EXPECT_THROW_MSG(
      sbgm::MLP(sbgm::MLPOptions(2).num_timesteps(3).num_classes(-1)),
      "num_classes must be >= 0, got -1");
  EXPECT_THROW_MSG(
      sbgm::MLP(
          sbgm::MLPOptions(2).num_timesteps(3).num_classes(2).class_dropout(2)),
      "class_dropout must lie in [0, 1], got 2");
}

TEST(ConditionalNets, UNetEmbedsClasses) {
  torch::manual_seed(1);
  sbgm::UNet net(
      sbgm::UNetOptions(1).channels({8, 16}).groups(4).num_classes(10));
  {
    torch::NoGradGuard ng;
    for (auto& p : net->named_parameters()) {
      if (p.key().find("class_embed") != std::string::npos) {
        p.value().normal_();
      }
    }
  }
  net->eval();
  const auto x = torch::randn({4, 1, 8, 8});
  const auto t = torch::rand({4});
  auto a = net->forward(x, t, torch::tensor({1, 2, 3, 4}));
  auto b = net->forward(x, t, torch::tensor({1, 2, 3, 5}));
  EXPECT_TRUE(torch::equal(a.slice(0, 0, 3), b.slice(0, 0, 3)));
  EXPECT_GT((a[3] - b[3]).abs().max().item<double>(), 1e-4);
  EXPECT_TRUE(
      torch::equal(net->forward(x, t), net->forward(x, t, labels(4, 10))));
  EXPECT_THROW_MSG(
      net->forward(x, t, torch::tensor({0, 1, 11, 2})),
      "UNet: class labels must lie in [0, 10] (10: no class), got values in "
      "[0, 11]");
  EXPECT_THROW_MSG(
      net->forward(x, t, torch::rand({4})),
      "UNet: a class embedding takes integer");
  // One batched guided call runs the conditional and null halves.
  auto guided = sbgm::classifier_free_guidance(
      Model(net, Prediction::Epsilon), GuidanceOptions(2).null_class(10));
  auto c = torch::tensor({1, 2, 3, 4});
  auto u = net->forward(x, t), k = net->forward(x, t, c);
  EXPECT_TRUE(sbgm::test::all_close(
      guided.with_condition(c)(x, t), u + 2 * (k - u), 1e-5, 1e-5));
}

// forward_conditions equals one forward per condition, and with
// class_up_path_only the down path and middle run once for all of them, and
// so do the up path's convolutions of the (shared) skip tensors.
TEST(ConditionalNets, UNetSharesTheDownPathBetweenConditions) {
  const auto x = torch::randn({3, 1, 8, 8}, torch::kDouble);
  const auto t = torch::rand({3}, torch::kDouble);
  const std::vector<torch::Tensor> conds{
      torch::tensor({1, 2, 3}), labels(3, 10), torch::tensor({7, 7, 0})};
  for (bool up_only : {false, true}) {
    auto net = class_unet(up_only);
    const Model model(net, Prediction::Epsilon);
    EXPECT_TRUE(model.shares_condition_work());
    std::vector<torch::Tensor> outs;
    const auto batches =
        conv_batches([&] { outs = model.evaluate_conditions(x, t, conds); });
    ASSERT_EQ(outs.size(), 3u);
    for (size_t k = 0; k < conds.size(); ++k) {
      EXPECT_TRUE(sbgm::test::all_close(
          outs[k], net->forward(x, t, conds[k]), 1e-12, 1e-12))
          << "up_path_only " << up_only << ", condition " << k;
    }
    // Without class_up_path_only every block sees the class: all at 3 N.
    // With it: conv_in, the down path and the middle at N, the rest at 3 N.
    int64_t at_n = 0, at_3n = 0;
    for (auto b : batches) {
      at_n += b == 3;
      at_3n += b == 9;
    }
    EXPECT_EQ(at_n + at_3n, static_cast<int64_t>(batches.size()));
    if (kCanObserveInputs && up_only) {
      // At N: conv_in, the down blocks' 2 + 2 (and a 1x1 skip), the
      // downsample, the middle's 2 blocks of 2 and its attention's 2; then
      // the first up block's conv1 and 1x1 skip (its input is all shared)
      // and the next up block's shares of both for its skip channels.
      EXPECT_EQ(at_n, 1 + 2 + 3 + 1 + 4 + 2 + 2 + 2);
      // At 3 N: conv2 of both up blocks, the transposed conv, the varying
      // shares of the second up block's conv1 and skip, and conv_out.
      EXPECT_EQ(at_3n, 6);
    } else if (kCanObserveInputs) {
      EXPECT_EQ(at_n, 0);
    }
    // The guided model is the same whichever way the halves are evaluated:
    // against a wrapper that hides forward_conditions (a batched forward).
    auto hidden = Model::conditional(
        [net](
            const torch::Tensor& xx,
            const torch::Tensor& tt,
            const torch::Tensor& c) mutable { return net->forward(xx, tt, c); },
        Prediction::Epsilon);
    EXPECT_FALSE(hidden.shares_condition_work());
    for (double phi : {0.0, 0.7}) {
      auto opts = GuidanceOptions(2.5).null_class(10).rescale(phi);
      EXPECT_TRUE(sbgm::test::all_close(
          sbgm::classifier_free_guidance(model, opts)(x, t, conds[0]),
          sbgm::classifier_free_guidance(hidden, opts)(x, t, conds[0]),
          1e-12,
          1e-12));
    }
    // A shared time (0-dim) works too.
    const auto t0 = torch::tensor(0.3, torch::kDouble);
    EXPECT_TRUE(sbgm::test::all_close(
        model.evaluate_conditions(x, t0, conds)[2],
        net->forward(x, t0, conds[2]),
        1e-12,
        1e-12));
  }
  // Where a GroupNorm group straddles the up block's two inputs (6 + 6
  // channels in groups of 4), that block takes the skip repeated instead.
  auto odd = class_unet(true, {6, 12}, 3);
  const auto outs = odd->forward_conditions(x, t, conds);
  for (size_t k = 0; k < conds.size(); ++k) {
    EXPECT_TRUE(sbgm::test::all_close(
        outs[k], odd->forward(x, t, conds[k]), 1e-12, 1e-12));
  }
}

TEST(ConditionalModel, EvaluateConditionsErrors) {
  auto net = class_unet(true);
  const Model model(net, Prediction::Epsilon);
  const auto x = torch::randn({3, 1, 8, 8}, torch::kDouble);
  const auto t = torch::rand({3}, torch::kDouble);
  EXPECT_THROW_MSG(
      model.evaluate_conditions(x, t, {}),
      "Model::evaluate_conditions: no condition was given");
  EXPECT_THROW_MSG(
      model.evaluate_conditions(x, t, {labels(3, 1), torch::Tensor()}),
      "Model::evaluate_conditions: condition 1 is undefined");
  EXPECT_THROW_MSG(
      model.evaluate_conditions(x, t, {labels(3, 1), labels(4, 2)}),
      "Model::evaluate_conditions: condition 1 has shape [4] for a batch of "
      "3; it needs one row per sample");
  EXPECT_THROW_MSG(
      net->forward_conditions(x, t, {labels(3, 1), labels(2, 2)}),
      "UNet::forward_conditions: condition 1 has shape [2]; each needs one "
      "label per sample (3)");
  EXPECT_THROW_MSG(
      net->forward_conditions(x, t, {labels(3, 1), labels(3, 11)}),
      "UNet: class labels must lie in [0, 10] (10: no class), got values in "
      "[11, 11]");
  EXPECT_THROW_MSG(
      Model(
          [](const torch::Tensor& xx, const torch::Tensor&) { return xx; },
          Prediction::Epsilon)
          .evaluate_conditions(torch::randn({2, 2}), torch::rand({2}), {}),
      "Model::evaluate_conditions: this epsilon model takes no condition");
  // A set_fn that returns the wrong number of outputs is named.
  auto bad = Model::conditional(
      [net](
          const torch::Tensor& xx,
          const torch::Tensor& tt,
          const torch::Tensor& c) mutable { return net->forward(xx, tt, c); },
      Prediction::Epsilon,
      0,
      [net](
          const torch::Tensor& xx,
          const torch::Tensor& tt,
          const std::vector<torch::Tensor>& cs) mutable {
        return std::vector<torch::Tensor>{net->forward(xx, tt, cs[0])};
      });
  EXPECT_TRUE(bad.shares_condition_work());
  EXPECT_THROW_MSG(
      bad.evaluate_conditions(x, t, {labels(3, 1), labels(3, 2)}),
      "Model::evaluate_conditions: the model returned 1 outputs for 2 "
      "conditions");
}

// Guidance costs one model call per evaluation, over twice the batch.
TEST(Guidance, OneBatchedCallPerEvaluation) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto cm = mixture().conditional_model(vp, Prediction::Epsilon);
  auto calls = std::make_shared<std::vector<int64_t>>();
  auto counted = Model::conditional(
      [cm, calls](
          const torch::Tensor& x,
          const torch::Tensor& t,
          const torch::Tensor& c) {
        calls->push_back(x.size(0));
        return cm(x, t, c);
      },
      Prediction::Epsilon);
  auto guided =
      sbgm::classifier_free_guidance(counted, GuidanceOptions(3).null_class(3));
  auto opts = ss::SampleOptions().sampler("dpmpp_2m").steps(10);
  opts.common().dtype(torch::kDouble);
  auto res = ss::sample(guided.with_condition(labels(7, 1)), *vp, {7, 2}, opts);
  EXPECT_EQ(static_cast<int64_t>(calls->size()), res.nfe);
  for (auto n : *calls) {
    EXPECT_EQ(n, 14);
  }
}

// Per-sample noise streams cut a guided conditional model into fixed blocks
// of rows; each sample's condition travels with it, so 16 samples drawn at
// once equal the same 16 drawn 8 at a time.
TEST(Guidance, PerSampleStreamsCarryTheCondition) {
  auto vp = std::make_shared<sbgm::VPSDE>();
  auto guided = sbgm::classifier_free_guidance(
      mixture().conditional_model(vp, Prediction::Epsilon),
      GuidanceOptions(2).null_class(3));
  const auto c = torch::arange(16).remainder(3);
  auto draw = [&](int64_t first, int64_t n) {
    auto opts = ss::SampleOptions().sampler("dpmpp_2m_sde").steps(20);
    opts.common().dtype(torch::kDouble).per_sample_seed(9).first_sample(first);
    opts.common().model_batch(8);
    return ss::sample(
               guided.with_condition(c.slice(0, first, first + n)),
               *vp,
               {n, 2},
               opts)
        .samples;
  };
  const auto all = draw(0, 16);
  EXPECT_TRUE(torch::equal(all, torch::cat({draw(0, 8), draw(8, 8)})));
  // Each sample went to its own component (means 2 or more apart).
  const auto means = mixture().means().index_select(0, c);
  EXPECT_LT((all - means).norm(2, 1).max().item<double>(), 2.0);
}
