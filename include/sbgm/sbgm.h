#pragma once

/// \file
/// Everything in sbgm.

#include "sbgm/gmm.h"
#include "sbgm/metrics/distances.h"
#include "sbgm/model.h"
#include "sbgm/samplers/ancestral.h"
#include "sbgm/samplers/common.h"
#include "sbgm/samplers/ode.h"
#include "sbgm/samplers/sde_samplers.h"
#include "sbgm/schedule.h"
#include "sbgm/sde.h"
#include "sbgm/version.h"
