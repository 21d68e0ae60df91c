#pragma once

// Private helpers of the continuous-time samplers.

#include <optional>

#include "sbgm/model.h"
#include "sbgm/sde.h"

namespace sbgm::samplers::detail {

/// The final time: `eps` or the SDE's default, checked to lie in (0, 1).
double resolve_eps(
    const std::optional<double>& eps, const SDE& sde, const char* where);

/// Checks num_steps >= 1.
void check_steps(int64_t num_steps, const char* where);

/// Calls the model at time t (a float tensor [N] of x's dtype filled with t
/// in `tbuf`) and converts its output to the score.
torch::Tensor score_at(
    const Model& model,
    const SDE& sde,
    const torch::Tensor& x,
    double t,
    torch::Tensor& tbuf);

}  // namespace sbgm::samplers::detail
