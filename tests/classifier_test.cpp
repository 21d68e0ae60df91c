#include "sbgm/metrics/classifier.h"

#include <torch/torch.h>

#include <cmath>

#include "support.h"

namespace sbgm {
namespace {

class ClassifierTest : public test::SeededTest {};

TEST_F(ClassifierTest, ScoreMatchesClosedForms) {
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  // Confident, evenly spread over K classes: score K.
  auto confident = torch::eye(4, o) * 60.0;
  EXPECT_NEAR(classifier_score(confident), 4.0, 1e-6);
  // All rows alike: score 1.
  EXPECT_NEAR(
      classifier_score(torch::randn({1, 5}, o).expand({7, 5})), 1.0, 1e-12);
  // Two rows p = (a, 1-a), (1-a, a): p(y) uniform, KL = log 2 - H(a).
  const double a = 0.8;
  auto logits = torch::tensor(
      {{std::log(a), std::log(1 - a)}, {std::log(1 - a), std::log(a)}}, o);
  const double kl = std::log(2.0) + a * std::log(a) + (1 - a) * std::log(1 - a);
  EXPECT_NEAR(classifier_score(logits), std::exp(kl), 1e-12);
  EXPECT_THROW_MSG(classifier_score(torch::randn({3})), "[N, K]");
  auto inf = torch::zeros({2, 3}, o);
  inf[0][1] = INFINITY;
  EXPECT_THROW_MSG(classifier_score(inf), "NaN or infinite");
}

TEST_F(ClassifierTest, ScoreFromProbabilityTables) {
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  // Uniform rows: p(y|x) = p(y), KL = 0, score 1.
  EXPECT_NEAR(
      classifier_score_from_probs(torch::full({6, 4}, 0.25, o)), 1.0, 1e-12);
  // One-hot rows, each class equally often: KL = log K, score K.
  for (int64_t k : {2, 3, 10}) {
    auto probs = torch::eye(k, o).repeat({3, 1});
    EXPECT_NEAR(
        classifier_score_from_probs(probs), static_cast<double>(k), 1e-12);
  }
  // One-hot but all the same class: score 1.
  auto same = torch::zeros({5, 3}, o);
  same.select(1, 2).fill_(1.0);
  EXPECT_NEAR(classifier_score_from_probs(same), 1.0, 1e-12);
  // Hand-made table: rows (1, 0), (1/2, 1/2); p(y) = (3/4, 1/4).
  // KL_1 = log(4/3), KL_2 = 1/2 log(2/3) + 1/2 log 2.
  auto table = torch::tensor({{1.0, 0.0}, {0.5, 0.5}}, o);
  const double kl = 0.5 * (std::log(4.0 / 3.0) + 0.5 * std::log(2.0 / 3.0) +
                           0.5 * std::log(2.0));
  EXPECT_NEAR(classifier_score_from_probs(table), std::exp(kl), 1e-12);
  // The logits version agrees on the same table (log of the probabilities).
  auto soft =
      torch::tensor({{0.7, 0.2, 0.1}, {0.1, 0.1, 0.8}, {0.3, 0.3, 0.4}}, o);
  EXPECT_NEAR(
      classifier_score(torch::log(soft)),
      classifier_score_from_probs(soft),
      1e-12);
  EXPECT_THROW_MSG(
      classifier_score_from_probs(torch::full({2, 2}, 0.6, o)), "sum to 1");
  EXPECT_THROW_MSG(
      classifier_score_from_probs(torch::tensor({{1.5, -0.5}}, o)), ">= 0");
  EXPECT_THROW_MSG(classifier_score_from_probs(torch::ones({3}, o)), "[N, K]");
  EXPECT_THROW_MSG(
      classifier_score_from_probs(torch::ones({2, 2}, torch::kLong)),
      "floating-point");
}

TEST_F(ClassifierTest, ShapesGradientsAndErrors) {
  DigitClassifier net(
      DigitClassifierOptions().conv1_channels(4).conv2_channels(8).hidden(16));
  auto x = torch::rand({3, 1, 28, 28});
  EXPECT_EQ(net->features(x).sizes(), (std::vector<int64_t>{3, 16}));
  auto logits = net(x);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 10}));
  logits.sum().backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
  }
  EXPECT_THROW_MSG(net(torch::rand({3, 2, 28, 28})), "x must be [N, 1, H, W]");
  EXPECT_THROW_MSG(
      DigitClassifier(DigitClassifierOptions().num_classes(1)), "num_classes");
  auto labels = torch::tensor({0, 1, 12}, torch::kLong);
  EXPECT_THROW_MSG(
      classifier_accuracy(net, x, labels), "labels must be in [0, 10)");
  EXPECT_THROW_MSG(
      classifier_accuracy(net, x, torch::tensor({0, 1}, torch::kLong)),
      "labels must be int64 [N]");
}

TEST_F(ClassifierTest, LearnsASeparableToyProblem) {
  // Class k = a bright square in quadrant k: trivially separable.
  const int64_t n = 256;
  auto labels = torch::randint(4, {n}, torch::kLong);
  auto images = torch::rand({n, 1, 28, 28}) * 0.2;
  for (int64_t i = 0; i < n; ++i) {
    const auto k = labels[i].item<int64_t>();
    const auto r = (k / 2) * 14, c = (k % 2) * 14;
    images[i].slice(1, r, r + 14).slice(2, c, c + 14).add_(0.8);
  }
  DigitClassifier net(DigitClassifierOptions()
                          .conv1_channels(4)
                          .conv2_channels(8)
                          .hidden(16)
                          .num_classes(4));
  train_classifier(
      net,
      images,
      labels,
      ClassifierTrainOptions().epochs(8).batch_size(32).lr(3e-3));
  EXPECT_GT(classifier_accuracy(net, images, labels), 0.95);
}

}  // namespace
}  // namespace sbgm
