#pragma once

/// \file
/// Everything in sbgm.

#include "sbgm/model.h"
#include "sbgm/optim/flat_adam.h"
#include "sbgm/schedule.h"
#include "sbgm/sde.h"
#include "sbgm/version.h"
