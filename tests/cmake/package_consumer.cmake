# Builds and runs examples/consumer twice: against mixlens installed into a
# scratch prefix (find_package(mixlens CONFIG)), and with add_subdirectory.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed: ${ARGV}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DMIXLENS_BUILD_TESTS=OFF -DMIXLENS_BUILD_EXAMPLES=OFF -DMIXLENS_BUILD_TOOLS=OFF -DMIXLENS_ENABLE_CUDA=OFF
    -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/build)
foreach(mode installed subdirectory)
  if(mode STREQUAL installed)
    set(how -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
  else()
    set(how -DMIXLENS_SOURCE_DIR=${SOURCE_DIR} -DMIXLENS_ENABLE_CUDA=OFF)
  endif()
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/consumer-${mode}
      -DCMAKE_CXX_COMPILER=${CXX_COMPILER} ${how})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-${mode})
  run(${WORK_DIR}/consumer-${mode}/mixlens_consumer)
  message(STATUS "consumer (${mode}) built and ran")
endforeach()
