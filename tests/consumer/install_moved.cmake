# cmake -DBUILD=<build dir> -DSTAGE=<dir> -DPREFIX=<dir> -P install_moved.cmake
# Installs the build into STAGE, then moves the installed tree to PREFIX:
# the consumer tests then use a package that was never where it was built
# for.
foreach(var BUILD STAGE PREFIX)
  if(NOT ${var})
    message(FATAL_ERROR "install_moved.cmake: set -D${var}=")
  endif()
endforeach()
file(REMOVE_RECURSE ${STAGE} ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${STAGE}
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install into ${STAGE} failed: ${rc}")
endif()
file(RENAME ${STAGE} ${PREFIX})
message(STATUS "installed into ${STAGE}, moved to ${PREFIX}")
