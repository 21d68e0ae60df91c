# sbgm-conditional's default 2-D run on moons: the label accuracy at its
# guidance scale must reach 0.95 for each half. Called with -DEXE and -DOUT.
file(REMOVE_RECURSE ${OUT})
execute_process(
  COMMAND ${EXE} --dataset moons --out ${OUT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sbgm-conditional failed with exit status ${rc}:\n${log}")
endif()
file(READ ${OUT}/metrics.json metrics)
string(REGEX MATCH "\"label_accuracy_weakest\": ([-0-9.e+]+)" found "${metrics}")
if(NOT found)
  message(FATAL_ERROR "metrics.json lacks label_accuracy_weakest:\n${metrics}")
endif()
message(STATUS "weakest class: label accuracy ${CMAKE_MATCH_1}")
if(CMAKE_MATCH_1 LESS 0.95)
  message(FATAL_ERROR "label accuracy ${CMAKE_MATCH_1} < 0.95:\n${log}")
endif()
