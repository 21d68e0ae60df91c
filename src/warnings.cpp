#include "sbgm/warnings.h"

#include <cstdio>
#include <mutex>

namespace sbgm {

namespace {
std::mutex& handler_mutex() {
  static std::mutex m;
  return m;
}
WarningHandler& handler() {
  static WarningHandler h = print_warning;
  return h;
}
}  // namespace

WarningHandler set_warning_handler(WarningHandler h) {
  std::lock_guard<std::mutex> lock(handler_mutex());
  std::swap(handler(), h);
  return h;
}

void print_warning(const std::string& message) {
  std::fprintf(stderr, "sbgm: warning: %s\n", message.c_str());
}

void warn(const std::string& message) {
  WarningHandler h;
  {
    std::lock_guard<std::mutex> lock(handler_mutex());
    h = handler();
  }
  if (h) {
    h(message);
  }
}

}  // namespace sbgm
