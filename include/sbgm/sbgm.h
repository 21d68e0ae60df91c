#pragma once

/// \file
/// Everything in sbgm.

#include "sbgm/losses.h"
#include "sbgm/model.h"
#include "sbgm/optim/flat_adam.h"
#include "sbgm/nets/embedding.h"
#include "sbgm/nets/mlp.h"
#include "sbgm/schedule.h"
#include "sbgm/sde.h"
#include "sbgm/train/checkpoint.h"
#include "sbgm/train/ema.h"
#include "sbgm/train/trainer.h"
#include "sbgm/version.h"
