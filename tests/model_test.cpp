#include "sbgm/model.h"

#include "support.h"

namespace sbgm {
namespace {

using test::all_close;

struct ToyImpl : torch::nn::Module {
  ToyImpl() {
    lin = register_module("lin", torch::nn::Linear(2, 2));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) {
    return lin(x) + t.to(x.scalar_type()).unsqueeze(1);
  }
  torch::nn::Linear lin{nullptr};
};
TORCH_MODULE(Toy);

TEST(Model, ConversionsFollowTheKernel) {
  // x = a x0 + s eps; every parameterization of the same point converts to
  // every other, for a VP-type point (a^2 + s^2 = 1) and a VE-type one.
  for (auto [m, s] : {std::pair<double, double>{0.8, 0.6}, {1.0, 3.5}}) {
    auto x0 = torch::randn({5, 3}, torch::kDouble);
    auto eps = torch::randn({5, 3}, torch::kDouble);
    auto x = x0 * m + eps * s;
    auto score = -eps / s;
    auto v = m * eps - s * x0;
    const Prediction all[] = {
        Prediction::Epsilon, Prediction::Score, Prediction::X0, Prediction::V};
    const torch::Tensor vals[] = {eps, score, x0, v};
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) {
        auto got = convert_prediction(vals[i], all[i], all[j], x, m, s);
        EXPECT_TRUE(all_close(got, vals[j], 1e-12, 1e-12))
            << to_string(all[i]) << " -> " << to_string(all[j]);
        // Tensor coefficients, one per sample.
        auto mt = torch::full({5, 1}, m, torch::kDouble);
        auto st = torch::full({5, 1}, s, torch::kDouble);
        auto got_t = convert_prediction(vals[i], all[i], all[j], x, mt, st);
        EXPECT_TRUE(all_close(got_t, vals[j], 1e-12, 1e-12));
        // The same map on doubles: to = x_coeff x + out_coeff out.
        const auto c = prediction_coeffs(all[i], all[j], m, s);
        EXPECT_TRUE(all_close(
            c.x_coeff * x + c.out_coeff * vals[i], vals[j], 1e-12, 1e-12));
        EXPECT_EQ(c.x_coeff_is_zero, c.x_coeff == 0.0);
      }
    }
  }
  EXPECT_EQ(prediction_from_string("v"), Prediction::V);
  EXPECT_EQ(prediction_from_string("eps"), Prediction::Epsilon);
  EXPECT_THROW_MSG(
      prediction_from_string("noise"),
      "unknown prediction 'noise' (expected epsilon, score, x0 or v)");
}

TEST(Model, WrapsModulesAndLambdas) {
  Toy toy;
  Model a(toy, Prediction::Epsilon);
  auto x = torch::randn({4, 2});
  auto t = torch::arange(4);
  EXPECT_TRUE(torch::equal(a(x, t), toy->forward(x, t)));
  EXPECT_EQ(a.prediction(), Prediction::Epsilon);
  Model b(
      [](const torch::Tensor& x, const torch::Tensor&) { return -x; },
      Prediction::Score);
  EXPECT_TRUE(torch::equal(b(x, t), -x));
}

TEST(ModelErrors, WrongOutputIsRefused) {
  Model wrong_shape(
      [](const torch::Tensor& x, const torch::Tensor&) { return x.sum(1); },
      Prediction::Epsilon);
  auto x = torch::randn({4, 2});
  auto t = torch::arange(4);
  EXPECT_THROW_MSG(
      wrong_shape(x, t),
      "the model returned shape [4] for input of shape [4, 2]");
  Model wrong_dtype(
      [](const torch::Tensor& x, const torch::Tensor&) {
        return x.to(torch::kDouble);
      },
      Prediction::Score);
  EXPECT_THROW_MSG(
      wrong_dtype(x, t), "returned dtype Double for input of dtype Float");
  Model undefined(
      [](const torch::Tensor&, const torch::Tensor&) {
        return torch::Tensor();
      },
      Prediction::Score);
  EXPECT_THROW_MSG(undefined(x, t), "returned an undefined tensor");
  EXPECT_THROW_MSG(
      Model(ModelFn(), Prediction::Score), "the callable is empty");
  EXPECT_THROW_MSG(
      convert_prediction(
          x, Prediction::Epsilon, Prediction::Score, x, 1.0, 0.0),
      "sigma must be finite and > 0, got 0");
  EXPECT_THROW_MSG(
      convert_prediction(
          x, Prediction::Epsilon, Prediction::X0, torch::randn({3}), 1.0, 1.0),
      "output has shape [4, 2] but x has shape [3]");
}

}  // namespace
}  // namespace sbgm
