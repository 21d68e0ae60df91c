#pragma once

// Evaluating one batch at several conditions (Model::evaluate_conditions,
// UNet::forward_conditions).

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace sbgm::detail {

// `a` repeated k times along the batch dimension.
inline torch::Tensor repeat_batch(const torch::Tensor& a, int64_t k) {
  std::vector<int64_t> reps(static_cast<size_t>(a.dim()), 1);
  reps[0] = k;
  return a.repeat(reps);
}

// fn at each of the K conditions `conds` (N rows each) for the same x [N,
// ...] and t, as one call over K copies of x with the conditions stacked;
// returns the K slices of its output. A time shared by the batch (0-dim or
// stride 0) stays shared; per-sample times are repeated.
template <class Fn>
std::vector<torch::Tensor> batched_conditions(
    const torch::Tensor& x,
    const torch::Tensor& t,
    const std::vector<torch::Tensor>& conds,
    Fn&& fn) {
  const int64_t n = x.size(0);
  const auto k = static_cast<int64_t>(conds.size());
  const bool shared_t = t.dim() == 0 || (t.dim() == 1 && t.stride(0) == 0);
  auto out =
      fn(repeat_batch(x, k),
         shared_t ? t.reshape({-1}).slice(0, 0, 1).expand({k * n})
                  : repeat_batch(t, k),
         torch::cat(conds));
  std::vector<torch::Tensor> outs;
  outs.reserve(conds.size());
  for (int64_t i = 0; i < k; ++i) {
    outs.push_back(out.slice(0, i * n, (i + 1) * n));
  }
  return outs;
}

}  // namespace sbgm::detail
