# Builds and runs examples/consumer twice: against mixlens installed into a
# scratch prefix (find_package(mixlens CONFIG)), and with add_subdirectory. Then
# the components: mixlens::mixlens needs none of models' and figures' packages
# (nlohmann-json, libpng, FreeType: hidden with CMAKE_DISABLE_FIND_PACKAGE_*), a
# request for models names what is missing, and a build without them installs
# the host library alone.
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

# Without nlohmann-json, libpng and FreeType: the installed host library still serves...
set(hide -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON -DCMAKE_DISABLE_FIND_PACKAGE_PNG=ON
    -DCMAKE_DISABLE_FIND_PACKAGE_Freetype=ON)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/consumer-core
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix ${hide})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-core)
run(${WORK_DIR}/consumer-core/mixlens_consumer)
message(STATUS "consumer (host library, no models packages) built and ran")

# ...a request for mixlens::models fails, naming the package, or the missing build.
function(expect_failure what expected)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(FIND "${out}${err}" "${expected}" at)
  if(rc EQUAL 0 OR at EQUAL -1)
    message(FATAL_ERROR "${what}: expected a failure mentioning '${expected}', got rc ${rc}:\n${out}\n${err}")
  endif()
  message(STATUS "${what}: refused, naming '${expected}'")
endfunction()
expect_failure("consumer requiring models without nlohmann-json" "nlohmann-json3-dev"
  ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/consumer-models
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DMIXLENS_CONSUMER_COMPONENTS=models ${hide})
expect_failure("consumer requiring an unknown component" "unknown component 'plots'"
  ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/consumer-plots
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DMIXLENS_CONSUMER_COMPONENTS=plots)

# A build of mixlens itself without them: the tools refuse to configure, the host library installs.
expect_failure("a build with the tools but without nlohmann-json" "nlohmann-json3-dev"
  ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build-tools -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  -DMIXLENS_BUILD_TESTS=OFF -DMIXLENS_BUILD_EXAMPLES=OFF -DMIXLENS_BUILD_TOOLS=ON -DMIXLENS_ENABLE_CUDA=OFF ${hide})
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build-core -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DMIXLENS_BUILD_TESTS=OFF -DMIXLENS_BUILD_EXAMPLES=OFF -DMIXLENS_BUILD_TOOLS=OFF -DMIXLENS_ENABLE_CUDA=OFF
    -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix-core ${hide})
run(${CMAKE_COMMAND} --install ${WORK_DIR}/build-core)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/consumer-core-build
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix-core)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-core-build)
expect_failure("models from a build without them" "was not part of this mixlens build"
  ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/consumer-core-models
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix-core -DMIXLENS_CONSUMER_COMPONENTS=models)
