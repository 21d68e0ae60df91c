#pragma once

/// \file
/// Models from TorchScript files: an eps-, score-, x0- or v-network written
/// in Python, scripted or traced (`torch.jit.script(net).save(path)`), runs
/// under every sampler here. Kept apart from the rest of the library so that
/// only the translation unit that loads such files pays for
/// <torch/script.h>.
///
/// Example:
/// ```
/// auto model = sbgm::load_torchscript("eps.pt", sbgm::Prediction::Epsilon);
/// sbgm::VPSDE process;
/// auto x = sbgm::samplers::sample(model, process, {64, 2}).samples;
/// ```

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "sbgm/model.h"

namespace sbgm {

/// Loads the TorchScript module at `path` onto `device` (in eval mode) and
/// wraps its `forward(x, t)`, which must return a tensor of x's shape, as a
/// Model predicting `prediction`. `discrete_steps` > 0 declares a network
/// that takes int64 step indices in [0, discrete_steps) (see Model). A file
/// that cannot be loaded, or a module whose forward does not take (x, t),
/// is an error that names the file; a forward that returns anything but a
/// tensor is an error when it is called.
Model load_torchscript(
    const std::string& path,
    Prediction prediction,
    torch::Device device = torch::kCPU,
    int64_t discrete_steps = 0);

}  // namespace sbgm
