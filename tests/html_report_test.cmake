# mixlens-attn --html: the page of a run on the bundled demo model, opened in headless
# Chromium with #selftest (the page catches script errors, draws every map, clicks a token and
# hovers a cell, and writes the result into <pre id="selftest">), and a screenshot of it.
#   cmake -DTOOL=<mixlens-attn> -DCHROMIUM=<chromium> -DDATA=<tests/data> -DWORK=<scratch dir>
#         -P html_report_test.cmake
cmake_minimum_required(VERSION 3.25)
foreach(var TOOL DATA WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "html_report_test: -D${var}=... is required")
  endif()
endforeach()
if(NOT CHROMIUM OR NOT EXISTS "${CHROMIUM}")
  find_program(CHROMIUM NAMES chromium chromium-browser google-chrome)
endif()
if(NOT CHROMIUM)
  message(FATAL_ERROR "html_report_test: chromium was not found: install Debian's chromium (scripts/test.sh does), "
                      "or configure with -DMIXLENS_BROWSER_TESTS=OFF to leave this test out")
endif()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(failures 0)
set(EXPECT_TIMEOUT 120)
include(${CMAKE_CURRENT_LIST_DIR}/cli_expect.cmake)

# "Hello, Mamba! What does it read?" in the demo's byte tokens.
set(text_ids 72,101,108,108,111,44,32,77,97,109,98,97,33,32,87,104,97,116,32,100,111,101,115,32,105,116,32,114,101,97,100,63)
expect(html 0 "tokens.json" --model ${DATA}/mamba_demo --tokens ${text_ids} --out ${WORK}/run --method grad-input
  --no-png --html ${WORK}/report.html)
expect_files(html ${WORK} report.html run/tokens.json)
# Inside the output folder: written with the outputs and listed in the manifest.
expect(html_in_out 0 "L = 3 tokens" --model ${DATA}/mamba_demo --tokens 1,2,3 --out ${WORK}/inside --no-png
  --html ${WORK}/inside/page.html)
expect_files(html_in_out ${WORK}/inside page.html)
file(READ ${WORK}/inside/mixlens-attn.manifest manifest)
if(NOT manifest MATCHES "\npage.html\n")
  message(SEND_ERROR "html_in_out: page.html is not in the manifest:\n${manifest}")
  math(EXPR failures "${failures} + 1")
endif()
expect(html_missing_folder 1 "--html '[^']*nowhere/r.html': the folder '[^']*nowhere' does not exist"
  --model ${DATA}/mamba_demo --tokens 1,2 --out ${WORK}/x --html ${WORK}/nowhere/r.html)
# A Vision Mamba run: its positions (CLS and the patches by row,col), both ways (nothing masked).
expect(html_vim 0 "L = 10 positions" --model ${DATA}/vim_mid_odd --image ${DATA}/images/rgb8.png --out ${WORK}/vim
  --method lrp --no-png --html ${WORK}/vim.html)
expect_files(html_vim ${WORK} vim.html vim/attribution.npy)
file(READ ${WORK}/vim.html vim_page)
foreach(want "\"text\": \"CLS\"" "\"text\": \"2,2\"" "\"causal\": false" "class [0-9]+ at position 4")
  if(NOT vim_page MATCHES "${want}")
    message(SEND_ERROR "html_vim: the page lacks ${want}")
    math(EXPR failures "${failures} + 1")
  endif()
endforeach()
if(EXISTS ${WORK}/x)
  message(SEND_ERROR "html errors: ${WORK}/x was written")
  math(EXPR failures "${failures} + 1")
endif()

# Self-contained: no address outside the page.
file(READ ${WORK}/report.html page)
if(page MATCHES "(src|href)=\"(https?:)?//")
  message(SEND_ERROR "html: the page loads something from the network")
  math(EXPR failures "${failures} + 1")
endif()

set(browser ${CHROMIUM} --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=${WORK}/profile)
# The demo's 4 layers, raw, rollout and the attribution (the default method, rollout, too);
# the Vim's 2 layers, raw, rollout and the attribution.
foreach(case report.html:32:7 inside/page.html:3:7 vim.html:10:5)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 page)
  list(GET parts 1 tokens)
  list(GET parts 2 maps)
  execute_process(COMMAND ${browser} --dump-dom "file://${WORK}/${page}#selftest"
    RESULT_VARIABLE rc OUTPUT_VARIABLE dom ERROR_VARIABLE err TIMEOUT 120)
  string(REGEX MATCH "id=\"selftest\">[^<]*" marker "${dom}")
  if(NOT rc STREQUAL "0")
    message(SEND_ERROR "selftest ${page}: chromium exit ${rc}\n${err}")
    math(EXPR failures "${failures} + 1")
  elseif(NOT marker MATCHES "mixlens-selftest: ok; errors 0; row [0-9]+ -&gt; [0-9]+; maps ${maps}; tokens ${tokens}$")
    message(SEND_ERROR "selftest ${page}: the page reports '${marker}'")
    math(EXPR failures "${failures} + 1")
  else()
    message(STATUS "ok   selftest ${page}: ${marker}")
  endif()
endforeach()
execute_process(COMMAND ${browser} --window-size=1280,760 --screenshot=${WORK}/report.png "file://${WORK}/report.html#map=3&row=20"
  RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc STREQUAL "0" OR NOT EXISTS ${WORK}/report.png)
  message(SEND_ERROR "screenshot: chromium exit ${rc}\n${err}")
  math(EXPR failures "${failures} + 1")
else()
  message(STATUS "ok   screenshot ${WORK}/report.png")
endif()

if(failures GREATER 0)
  message(FATAL_ERROR "html_report_test: ${failures} failure(s)")
endif()
message(STATUS "html_report_test: all cases passed")
