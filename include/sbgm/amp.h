#pragma once

/// \file
/// Mixed precision on CUDA: autocast for the scope of a model call.

#include <torch/types.h>

namespace sbgm {

/// While alive, CUDA operators run under autocast to `dtype` (bf16 by
/// default: matrix products and convolutions in bf16, reductions and
/// normalizations in float32), as `with torch.autocast("cuda", dtype)` does
/// in Python. The previous autocast state and dtype come back when it goes
/// out of scope, so guards nest; the cast cache is cleared when the
/// outermost guard ends. CPU operators are not affected. Wrap the forward
/// pass and the loss, not backward() (autograd reuses the forward's casts).
///
/// Example:
/// ```
/// torch::Tensor loss;
/// {
///   sbgm::AutocastGuard amp(device.is_cuda());
///   loss = sbgm::dsm_loss(model, sde, x0);
/// }
/// loss.backward();
/// ```
class AutocastGuard {
 public:
  /// enabled = false leaves the state as it is (a no-op guard), so callers
  /// can write `AutocastGuard g(use_amp)`. dtype: kBFloat16 or kHalf.
  explicit AutocastGuard(
      bool enabled = true, torch::ScalarType dtype = torch::kBFloat16);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

  /// Whether CUDA autocast is on in the calling thread.
  static bool enabled_now();
  /// The CUDA autocast dtype of the calling thread.
  static torch::ScalarType dtype_now();

 private:
  bool active_;
  bool prev_enabled_ = false;
  torch::ScalarType prev_dtype_ = torch::kBFloat16;
};

}  // namespace sbgm
