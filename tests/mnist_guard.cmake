# The MNIST recipe's regression guard: the default recipe trains briefly on
# the 32-digit fixture, and its final loss and sample statistics must stay
# inside bounds measured on it (see tests/CMakeLists.txt). Called by ctest
# with -DEXE, -DDATA and -DOUT.
file(REMOVE_RECURSE ${OUT})
execute_process(
  COMMAND ${EXE} --data ${DATA} --steps 300 --batch 16 --num-samples 32
    --sample-steps 10 --seed 3 --out ${OUT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sbgm-mnist failed with exit status ${rc}:\n${log}")
endif()
file(READ ${OUT}/metrics.json metrics)
# CHECKS: key:low:high,...
string(REPLACE "," ";" CHECKS "${CHECKS}")
foreach(check ${CHECKS})
  string(REPLACE ":" ";" check "${check}")
  list(GET check 0 key)
  list(GET check 1 lo)
  list(GET check 2 hi)
  string(REGEX MATCH "\"${key}\": ([-0-9.e+]+)" found "${metrics}")
  if(NOT found)
    message(FATAL_ERROR "metrics.json lacks ${key}:\n${metrics}")
  endif()
  set(value ${CMAKE_MATCH_1})
  if(value LESS lo OR value GREATER hi)
    message(FATAL_ERROR "${key} = ${value} is outside its measured bounds [${lo}, ${hi}]")
  endif()
  message(STATUS "${key} = ${value} in [${lo}, ${hi}]")
endforeach()
