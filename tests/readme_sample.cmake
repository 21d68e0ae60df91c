# The README's first ```cpp block and examples/quickstart/main.cpp are the
# same program (the tour a user reads is the one that is built and run).
file(READ ${README} readme)
string(REGEX MATCH "```cpp\n([^`]*)```" _ "${readme}")
if(NOT CMAKE_MATCH_1)
  message(FATAL_ERROR "no ```cpp block in ${README}")
endif()
file(READ ${QUICKSTART} quickstart)
if(NOT CMAKE_MATCH_1 STREQUAL quickstart)
  message(FATAL_ERROR "${QUICKSTART} differs from the README's tour: copy one onto the other")
endif()
