#include "sbgm/amp.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

// The C++ autocast API took a device type in LibTorch 2.4; both spellings
// exist in CPU-only builds too.
#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SBGM_AUTOCAST_DEVICE_API 1
#endif

namespace sbgm {

namespace {

void set_state(bool enabled, torch::ScalarType dtype) {
#ifdef SBGM_AUTOCAST_DEVICE_API
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
#else
  at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::set_enabled(enabled);
#endif
}

}  // namespace

bool AutocastGuard::enabled_now() {
#ifdef SBGM_AUTOCAST_DEVICE_API
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

torch::ScalarType AutocastGuard::dtype_now() {
#ifdef SBGM_AUTOCAST_DEVICE_API
  return at::autocast::get_autocast_dtype(at::kCUDA);
#else
  return at::autocast::get_autocast_gpu_dtype();
#endif
}

AutocastGuard::AutocastGuard(bool enabled, torch::ScalarType dtype)
    : active_(enabled) {
  TORCH_CHECK(
      dtype == torch::kBFloat16 || dtype == torch::kHalf,
      "AutocastGuard: dtype must be bfloat16 or half, got ",
      dtype);
  if (!active_) {
    return;
  }
  prev_enabled_ = enabled_now();
  prev_dtype_ = dtype_now();
  if (prev_enabled_ && prev_dtype_ != dtype) {
    // The cast cache is keyed by the source tensor only: casts to the
    // outer dtype must not be handed out inside.
    at::autocast::clear_cache();
  }
  set_state(true, dtype);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) {
    return;
  }
  if (at::autocast::decrement_nesting() == 0 ||
      (prev_enabled_ && prev_dtype_ != dtype_now())) {
    at::autocast::clear_cache();
  }
  set_state(prev_enabled_, prev_dtype_);
}

}  // namespace sbgm
