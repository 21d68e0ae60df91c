// The parent project's program: the sbgm core, built as its subproject.
#include <sbgm/sbgm.h>

#include <iostream>

#ifndef SBGM_PARENT_FLAG
#error "the parent's CMAKE_CXX_FLAGS were lost"
#endif

int main() {
  sbgm::DiscreteProcess process(sbgm::Schedule::linear(10, 1e-4, 0.02));
  const double std = process.sigma(0.5 * process.t_max());
  if (!(std > 0.0 && std < 1.0)) {
    std::cerr << "parent_app: sigma(t_max / 2) " << std << " not in (0, 1)\n";
    return 1;
  }
  std::cout << "parent_app: " << process.describe() << "\n";
  return 0;
}
