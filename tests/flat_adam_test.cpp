#include "sbgm/optim/flat_adam.h"

#include <sstream>

#include "support.h"

namespace sbgm {
namespace {

torch::nn::Sequential make_net() {
  torch::nn::Sequential net(
      torch::nn::Linear(3, 16),
      torch::nn::Tanh(),
      torch::nn::Linear(16, 16),
      torch::nn::Tanh(),
      torch::nn::Linear(16, 2));
  net->to(torch::kDouble);
  return net;
}

void copy_params(torch::nn::Sequential& dst, const torch::nn::Sequential& src) {
  torch::NoGradGuard g;
  auto d = dst->parameters();
  auto s = src->parameters();
  for (size_t i = 0; i < d.size(); ++i) {
    d[i].copy_(s[i]);
  }
}

torch::Tensor loss_of(torch::nn::Sequential& net, int64_t step) {
  torch::manual_seed(100 + step);
  auto x = torch::randn({32, 3}, torch::kDouble);
  auto y = torch::randn({32, 2}, torch::kDouble) * 5;
  return (net->forward(x) - y).pow(2).mean();
}

// FlatAdam with fused clipping must follow torch::optim::Adam after
// torch::nn::utils::clip_grad_norm_, the reference implementation.
TEST(FlatAdam, MatchesTorchAdamWithClipping) {
  torch::manual_seed(0);
  auto ref = make_net();
  auto net = make_net();
  copy_params(net, ref);
  torch::optim::Adam adam(
      ref->parameters(), torch::optim::AdamOptions(1e-2).weight_decay(1e-3));
  FlatAdam flat(
      net->parameters(),
      FlatAdamOptions(1e-2).weight_decay(1e-3).max_grad_norm(0.5));
  for (int64_t step = 0; step < 25; ++step) {
    adam.zero_grad();
    loss_of(ref, step).backward();
    torch::nn::utils::clip_grad_norm_(ref->parameters(), 0.5);
    adam.step();

    // Odd steps go through the base class's zero_grad(), as generic code
    // holding an Optimizer& does (it detaches and zeroes every gradient).
    if (step % 2 == 0) {
      flat.zero_flat_grad();
    } else {
      static_cast<torch::optim::Optimizer&>(flat).zero_grad();
    }
    loss_of(net, step).backward();
    flat.step();
  }
  auto a = ref->parameters();
  auto b = net->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(test::all_close(b[i], a[i], 1e-10, 1e-12)) << "parameter " << i;
  }
  EXPECT_EQ(flat.step_count(), 25);
  // Parameters really are views into one buffer.
  EXPECT_EQ(b[0].data_ptr(), flat.flat_params().data_ptr());
}

TEST(FlatAdam, SurvivesReplacedStorageAndGradients) {
  // Loading a checkpoint replaces parameter storage; set_to_none-style
  // zero_grad drops gradients. Both must be picked up at the next step.
  torch::manual_seed(1);
  auto ref = make_net();
  auto net = make_net();
  copy_params(net, ref);
  FlatAdam a(ref->parameters(), FlatAdamOptions(1e-2));
  FlatAdam b(net->parameters(), FlatAdamOptions(1e-2));
  for (int64_t step = 0; step < 3; ++step) {
    a.zero_flat_grad();
    loss_of(ref, step).backward();
    a.step();
    for (auto& p : net->parameters()) {
      p.mutable_grad() = torch::Tensor();
    }
    loss_of(net, step).backward();
    b.step();
  }
  // Save both, reload `net` from a's parameters through an archive.
  std::stringstream ss;
  {
    torch::serialize::OutputArchive out;
    ref->save(out);
    a.save(out);
    out.save_to(ss);
  }
  torch::serialize::InputArchive in;
  in.load_from(ss);
  net->load(in);
  b.load(in);
  for (int64_t step = 3; step < 6; ++step) {
    a.zero_flat_grad();
    loss_of(ref, step).backward();
    a.step();
    b.zero_flat_grad();
    loss_of(net, step).backward();
    b.step();
  }
  auto pa = ref->parameters();
  auto pb = net->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;
  }
}

TEST(FlatAdamErrors, BadInput) {
  auto net = make_net();
  EXPECT_THROW_MSG(
      FlatAdam(net->parameters(), FlatAdamOptions(-1.0)),
      "lr must be >= 0, got -1");
  EXPECT_THROW_MSG(
      FlatAdam(
          net->parameters(),
          FlatAdamOptions(1e-3).betas(std::make_tuple(0.9, 1.0))),
      "betas must lie in [0, 1), got (0.9, 1)");
  EXPECT_THROW_MSG(FlatAdam({}, FlatAdamOptions()), "no parameters given");
  auto mixed = net->parameters();
  mixed.push_back(torch::zeros({2}, torch::kFloat).requires_grad_());
  EXPECT_THROW_MSG(
      FlatAdam(mixed, FlatAdamOptions()),
      "parameter 6 is Float on cpu, parameter 0 is Double on cpu");
}

}  // namespace
}  // namespace sbgm
