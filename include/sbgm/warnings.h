#pragma once

/// \file
/// Where sbgm's warnings go. A warning is advice, not an error: for example
/// that a schedule stops far from the prior it is sampled from. By default
/// each is written as one line, "sbgm: warning: ...", to stderr; a program
/// routes them to its own log, or silences them, with set_warning_handler.

#include <functional>
#include <string>

namespace sbgm {

/// Receives the text of a warning (one line, no trailing newline).
using WarningHandler = std::function<void(const std::string& message)>;

/// Sends every later warning to `handler` (an empty handler silences them)
/// and returns the previous handler. Thread-safe.
///
/// Example: `sbgm::set_warning_handler(nullptr);  // no warnings`
WarningHandler set_warning_handler(WarningHandler handler);

/// The default handler: writes "sbgm: warning: <message>" to stderr.
void print_warning(const std::string& message);

/// Issues a warning through the current handler.
void warn(const std::string& message);

}  // namespace sbgm
