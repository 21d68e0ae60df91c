#pragma once

#define SBGM_VERSION_MAJOR 0
#define SBGM_VERSION_MINOR 1
#define SBGM_VERSION_PATCH 0

namespace sbgm {
/// "major.minor.patch" of the library headers.
inline constexpr const char* kVersion = "0.1.0";
}  // namespace sbgm
