#include <gtest/gtest.h>
#include <sbgm/nets/mlp.h>
#include <sbgm/optim/flat_adam.h>
#include <sbgm/train/ema.h>

#include "support.h"

namespace {

using sbgm::EMA;
using sbgm::MLP;
using sbgm::MLPOptions;

MLP make_net() {
  torch::manual_seed(11);
  MLP net(MLPOptions(2).hidden(8).num_timesteps(6));
  net->to(torch::kDouble);
  return net;
}

// The EMA of a module whose parameters FlatAdam keeps in one buffer (updated
// as one flat tensor) equals the EMA of the same module updated tensor by
// tensor, and follows e <- d e + (1 - d) p with the warm-up decay.
TEST(EMAFlat, FlatLayoutGivesTheSameAverages) {
  MLP a = make_net(), b = make_net();
  sbgm::FlatAdam flat(b->parameters(), sbgm::FlatAdamOptions(0.1));
  EMA ea(*a, 0.9), eb(*b, 0.9);
  std::vector<torch::Tensor> expect;
  for (const auto& p : a->parameters()) {
    expect.push_back(p.detach().clone());
  }
  for (int step = 0; step < 6; ++step) {
    torch::NoGradGuard g;
    const double d = std::min(0.9, (1.0 + step) / (10.0 + step));
    auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      const auto delta = torch::randn_like(pa[i]);
      pa[i].add_(delta);
      pb[i].add_(delta);
      expect[i] = d * expect[i] + (1 - d) * pa[i];
    }
    ea.update(*a);
    eb.update(*b);
  }
  ASSERT_EQ(ea.shadow().size(), eb.shadow().size());
  // The flat path ran: eb's shadows are views of one buffer, ea's are not.
  EXPECT_TRUE(
      eb.shadow().back().storage().is_alias_of(eb.shadow().front().storage()));
  EXPECT_FALSE(
      ea.shadow().back().storage().is_alias_of(ea.shadow().front().storage()));
  for (size_t i = 0; i < expect.size(); ++i) {
    EXPECT_LT(sbgm::test::max_abs_diff(ea.shadow()[i], expect[i]), 1e-12);
    EXPECT_LT(sbgm::test::max_abs_diff(eb.shadow()[i], expect[i]), 1e-12);
  }
  // copy_to writes the averages into the (flat) parameters.
  eb.copy_to(*b);
  auto pb = b->parameters();
  for (size_t i = 0; i < expect.size(); ++i) {
    EXPECT_LT(sbgm::test::max_abs_diff(pb[i], expect[i]), 1e-12);
  }
}

}  // namespace
