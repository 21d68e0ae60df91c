#pragma once

/// \file
/// Seeded random generators: the same seed gives the same samples.

#include <torch/types.h>

#include <cstdint>

namespace sbgm {

/// A generator of its own on `device` (CPU or CUDA), seeded with `seed`,
/// for CommonOptions::generator, data samplers and losses. Asking for a
/// CUDA generator where LibTorch has no CUDA is an error that says so.
///
/// Example:
/// ```
/// auto gen = sbgm::make_generator(42);
/// auto r = sbgm::samplers::ddpm(model, process, {64, 2},
///     sbgm::samplers::DDPMOptions().common(
///         sbgm::samplers::CommonOptions().generator(gen)));
/// ```
torch::Generator make_generator(
    uint64_t seed, torch::Device device = torch::Device(torch::kCPU));

/// Throws an sbgm error that names `device` and says how to get a CUDA
/// LibTorch unless tensors can be made there (a CUDA device on a LibTorch
/// built without CUDA, or with no GPU present).
void check_device(torch::Device device, const char* where);

}  // namespace sbgm
