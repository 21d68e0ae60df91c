# cmake -DPREFIX=<installed prefix> -P check_package.cmake
# The installed CMake package is relocatable: no file of it names an
# absolute path (a library of the build machine, the source, build or
# install directory); paths are relative to the package's own location
# (${_IMPORT_PREFIX}, ${CMAKE_CURRENT_LIST_DIR}, ${PACKAGE_PREFIX_DIR}).
# And sbgm::sbgm, the core, links LibTorch targets only (plus
# nlohmann-json's header-only target).
if(NOT PREFIX)
  message(FATAL_ERROR "check_package.cmake: set -DPREFIX=")
endif()
file(GLOB_RECURSE files ${PREFIX}/*/cmake/sbgm/*.cmake)
if(NOT files)
  message(FATAL_ERROR "no sbgm CMake package files under ${PREFIX}")
endif()
set(bad "")
foreach(f ${files})
  file(STRINGS ${f} lines)
  foreach(line IN LISTS lines)
    if(line MATCHES "^[ \t]*#")
      continue()
    endif()
    # An absolute path: "/x" at the start of a quoted string, list item or
    # argument (a variable's value such as ${_IMPORT_PREFIX}/lib is fine).
    if(line MATCHES "(^|[\" ;(])/[A-Za-z0-9_.]")
      list(APPEND bad "${f}: ${line}")
    endif()
  endforeach()
endforeach()
if(bad)
  string(REPLACE ";" "\n  " bad "${bad}")
  message(FATAL_ERROR "absolute paths in the installed package:\n  ${bad}")
endif()

# sbgm::sbgm's INTERFACE_LINK_LIBRARIES, as exported.
file(GLOB targets ${PREFIX}/*/cmake/sbgm/sbgmTargets.cmake)
file(READ ${targets} text)
string(REGEX MATCH "set_target_properties\\(sbgm::sbgm PROPERTIES[^)]*\\)" props "${text}")
if(NOT props)
  message(FATAL_ERROR "sbgm::sbgm's properties not found in ${targets}")
endif()
string(REGEX MATCH "INTERFACE_LINK_LIBRARIES \"([^\"]*)\"" _ "${props}")
set(libs "${CMAKE_MATCH_1}")
if(NOT libs)
  message(FATAL_ERROR "sbgm::sbgm links nothing? ${props}")
endif()
set(has_torch FALSE)
foreach(lib IN LISTS libs)
  # LINK_ONLY: a static core's private system libraries (dl) by name.
  if(lib MATCHES "^(torch|c10|torch_library)$")
    set(has_torch TRUE)
  elseif(NOT lib MATCHES "^(nlohmann_json::nlohmann_json|\\\\?\\$<LINK_ONLY:dl>)$")
    message(FATAL_ERROR "sbgm::sbgm links '${lib}', not a LibTorch target (all: ${libs})")
  endif()
endforeach()
if(NOT has_torch)
  message(FATAL_ERROR "sbgm::sbgm does not link LibTorch's targets: ${libs}")
endif()
message(STATUS "sbgm::sbgm links: ${libs}; ${PREFIX}: no absolute paths in ${files}")
