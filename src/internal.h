#pragma once

// Private helpers shared by the library's translation units.

#include <torch/types.h>

#include <atomic>
#include <limits>
#include <optional>
#include <string>

namespace sbgm::detail {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

/// Shape of a per-sample coefficient so that it broadcasts against `like`:
/// [N] -> [N, 1, ..., 1]; 0-dim stays 0-dim.
inline torch::Tensor batch_view(
    const torch::Tensor& coef, const torch::Tensor& like) {
  if (coef.dim() == 0 || like.dim() <= 1) {
    return coef;
  }
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = coef.size(0);
  return coef.view(shape);
}

/// Checks a time tensor against the data it goes with: floating or integer as
/// asked, on x's device, 0-dim or [N] with N = x.size(0).
void check_time_tensor(
    const torch::Tensor& t,
    const torch::Tensor& x,
    bool integer,
    const char* where);

/// Checks that x is a defined floating-point tensor.
void check_floating(
    const torch::Tensor& x, const char* name, const char* where);

/// Throws unless every value of x is finite ("where: name holds 3
/// non-finite values (NaN or Inf) among 256, first at flat index 17"). With
/// `sync_ok` false the check is skipped for tensors off the CPU, where it
/// would make the host wait for the device (per-step paths such as the
/// losses: the Trainer then names the step whose loss is not finite).
void check_finite(
    const torch::Tensor& x,
    const char* name,
    const char* where,
    bool sync_ok = true);

/// Checks that two tensors live on the same device.
void check_same_device(
    const torch::Tensor& a,
    const char* a_name,
    const torch::Tensor& b,
    const char* b_name,
    const char* where);

/// [min, max] of a tensor if reading it costs no device sync (CPU tensors);
/// false otherwise. Used for value checks that must not stall a CUDA stream.
bool host_minmax(const torch::Tensor& t, double* lo, double* hi);

/// Throws unless every step index of t lies in [0, T) ("where: step
/// indices must lie in [0, T), got values in [lo, hi]"); checks CPU
/// tensors only (on a device, the lookup itself asserts).
void check_step_range(const torch::Tensor& t, int64_t T, const char* where);

/// The class labels a conditional net embeds: `cond` as int64 [N] (N =
/// x.size(0)) checked to lie in [0, num_classes] (num_classes is the null
/// class), all null when `cond` is undefined, and a `drop` share of them
/// (drawn from the default generator) replaced by the null class. Clear
/// errors for float conditions, wrong shapes and labels out of range.
torch::Tensor class_labels(
    const torch::Tensor& cond,
    const torch::Tensor& x,
    int64_t num_classes,
    double drop,
    const char* where);

// x86-64 with GCC: build a CPU kernel for AVX-512, AVX2 and baseline SSE and
// pick one at load time (ifunc), without requiring -march for the library.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__GLIBC__)
#define SBGM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SBGM_CLONES
#endif

std::string shape_str(const torch::Tensor& t);

/// Our public signatures take std::optional<torch::Generator>; LibTorch's
/// factory functions take c10::optional (a different type in LibTorch 1.13).
inline c10::optional<at::Generator> to_c10(
    const std::optional<torch::Generator>& g) {
  return g ? c10::optional<at::Generator>(*g) : c10::nullopt;
}

/// Set once the warning about a schedule that stops short of N(0, I) has
/// been printed (tests reset it).
std::atomic<bool>& prior_warning_issued();

}  // namespace sbgm::detail
