#pragma once

/// \file
/// Every built-in noise process; each also has a header of its own under
/// sbgm/processes/ (vp.h, ve.h, edm.h, discrete.h).

#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
