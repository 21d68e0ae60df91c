#pragma once

/// \file
/// Deprecated: every built-in noise process at once. Each has a header of
/// its own under sbgm/processes/ (vp.h, ve.h, edm.h, discrete.h); include
/// those (or sbgm/sbgm.h). Kept while callers move over.

#include "sbgm/processes/discrete.h"
#include "sbgm/processes/edm.h"
#include "sbgm/processes/ve.h"
#include "sbgm/processes/vp.h"
