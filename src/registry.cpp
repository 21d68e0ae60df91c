#include "sbgm/registry.h"

#include <c10/util/Exception.h>

namespace sbgm::detail {

void registry_error(const std::string& msg) {
  TORCH_CHECK(false, msg);
}

}  // namespace sbgm::detail
