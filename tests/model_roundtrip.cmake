# Round trip of a trained model through its file: sbgm-swiss-roll trains,
# samples and saves model.safetensors; sbgm-sample, a fresh process, loads
# the file and must write the same samples.npy, bit for bit, drawing in
# batches of another size (per-sample noise streams). A resumed finished
# run must report the first run's training time and final loss.
# Called by ctest with -DTRAIN (sbgm-swiss-roll), -DSAMPLE (sbgm-sample)
# and -DOUT.
file(REMOVE_RECURSE ${OUT})
foreach(sampler ddpm dpmpp_2m)
  set(run ${OUT}/${sampler})
  execute_process(
    COMMAND ${TRAIN} --steps 200 --batch 64 --timesteps 50 --num-samples 300
      --sample-steps 20 --sampler ${sampler} --seed 0 --out ${run}
    RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT EXISTS ${run}/model.safetensors)
    message(FATAL_ERROR "sbgm-swiss-roll failed (${rc}) or wrote no model:\n${log}\n${err}")
  endif()
  # The demo samples with seed + 1.
  execute_process(
    COMMAND ${SAMPLE} ${run}/model.safetensors --sampler ${sampler} --steps 20
      --num-samples 300 --batch 64 --seed 1 --threads 1 --out ${run}/sampled
    RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sbgm-sample failed (${rc}):\n${log}\n${err}")
  endif()
  foreach(f samples.npy samples.png)
    if(NOT EXISTS ${run}/sampled/${f})
      message(FATAL_ERROR "sbgm-sample did not write ${f}")
    endif()
  endforeach()
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E compare_files ${run}/samples.npy ${run}/sampled/samples.npy
    RESULT_VARIABLE same)
  if(NOT same EQUAL 0)
    message(FATAL_ERROR "${sampler}: sbgm-sample's samples differ from the training process's")
  endif()
  # Another seed gives other samples.
  execute_process(
    COMMAND ${SAMPLE} ${run}/model.safetensors --sampler ${sampler} --steps 20
      --num-samples 300 --seed 2 --out ${run}/other
    RESULT_VARIABLE rc)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E compare_files ${run}/samples.npy ${run}/other/samples.npy
    RESULT_VARIABLE same)
  if(NOT rc EQUAL 0 OR same EQUAL 0)
    message(FATAL_ERROR "${sampler}: seed 2 failed (${rc}) or gave the same samples")
  endif()
endforeach()

# Resuming the finished run trains nothing but reports the run's figures.
set(run ${OUT}/dpmpp_2m)
file(READ ${run}/metrics.json first)
string(REGEX MATCH "\"train_seconds\": ([-0-9.e+]+)" _ "${first}")
set(first_seconds ${CMAKE_MATCH_1})
string(REGEX MATCH "\"final_loss\": ([-0-9.e+]+)" _ "${first}")
set(first_loss ${CMAKE_MATCH_1})
execute_process(
  COMMAND ${TRAIN} --steps 200 --batch 64 --timesteps 50 --num-samples 300
    --sample-steps 20 --sampler dpmpp_2m --seed 0 --resume --out ${run}
  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "--resume failed (${rc}):\n${log}\n${err}")
endif()
file(READ ${run}/metrics.json second)
string(REGEX MATCH "\"train_seconds\": ([-0-9.e+]+)" _ "${second}")
set(second_seconds ${CMAKE_MATCH_1})
string(REGEX MATCH "\"final_loss\": ([-0-9.e+]+)" _ "${second}")
set(second_loss ${CMAKE_MATCH_1})
if("${first_seconds}" STREQUAL "" OR "${second_seconds}" LESS "${first_seconds}")
  message(FATAL_ERROR "resumed run reports ${second_seconds} s of training; the run took ${first_seconds} s:\n${second}")
endif()
if(NOT "${second_loss}" STREQUAL "${first_loss}")
  message(FATAL_ERROR "resumed run reports final loss '${second_loss}', the run's was ${first_loss}:\n${second}")
endif()
