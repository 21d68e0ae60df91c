#!/usr/bin/env bash
# Formats the project's C++ sources with the repo's .clang-format.
# Only C++ files: clang-format would mangle CMakeLists.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files -z --cached --others --exclude-standard -- \
  '*.h' '*.hpp' '*.cpp' '*.cc' | xargs -0 -r clang-format -i
