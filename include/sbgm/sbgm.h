#pragma once

/// \file
/// Everything in sbgm.

#include "sbgm/data/mnist.h"
#include "sbgm/data/toy2d.h"
#include "sbgm/io/gif.h"
#include "sbgm/io/image.h"
#include "sbgm/io/npy.h"
#include "sbgm/metrics/classifier.h"
#include "sbgm/metrics/frechet.h"
#include "sbgm/model.h"
#include "sbgm/optim/flat_adam.h"
#include "sbgm/nets/unet.h"
#include "sbgm/gmm.h"
#include "sbgm/metrics/distances.h"
#include "sbgm/samplers/ancestral.h"
#include "sbgm/samplers/common.h"
#include "sbgm/samplers/ode.h"
#include "sbgm/samplers/sde_samplers.h"
#include "sbgm/schedule.h"
#include "sbgm/sde.h"
#include "sbgm/version.h"
