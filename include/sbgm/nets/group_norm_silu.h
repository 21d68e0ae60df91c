#pragma once

/// \file
/// SiLU(GroupNorm(x)) as one operation: the pair that opens every residual
/// block of a diffusion U-Net.

#include <torch/types.h>

#include <cstdint>

namespace sbgm {

/// silu(group_norm(x, groups, weight, bias, eps)), silu(y) = y sigmoid(y),
/// differentiable in x, weight and bias (first derivatives only).
///
/// For contiguous float32/float64 CPU tensors it runs one fused kernel each
/// way: the forward reads x once per group for the statistics and once to
/// write the output (ATen's pair writes and re-reads the normalized tensor),
/// and the backward recomputes the normalized values instead of storing
/// them, so it saves one activation-sized tensor per call. Elsewhere (CUDA,
/// other layouts, no affine parameters) it is
/// `torch::silu(torch::group_norm(x, groups, weight, bias, eps))`.
///
/// x: [N, C, *] with C divisible by groups; weight, bias: [C] (or both
/// undefined).
torch::Tensor group_norm_silu(
    const torch::Tensor& x,
    int64_t groups,
    const torch::Tensor& weight,
    const torch::Tensor& bias,
    double eps = 1e-5);

}  // namespace sbgm
