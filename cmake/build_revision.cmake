# Writes OUTPUT, a header naming the git revision of SOURCE_DIR that the binaries are built from
# ("+uncommitted" when the code differs from it), so that a results file names the code that
# made it even when the binary runs from a copy or the tree has moved on. Run at configure time
# and at every build; the header is rewritten only when the revision changes, so only its one
# includer recompiles.
execute_process(COMMAND git rev-parse --short HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE revision OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE failed ERROR_QUIET)
if(failed OR revision STREQUAL "")
  set(revision "unknown")
else()
  execute_process(COMMAND git diff --quiet HEAD -- src include apps configs cmake CMakeLists.txt
                  WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE differs ERROR_QUIET)
  if(differs)
    string(APPEND revision "+uncommitted")
  endif()
endif()
set(content "// Written by cmake/build_revision.cmake (at configure time and every build).\n#pragma once\n#define DISTILLERY_BUILD_REVISION \"${revision}\"\n")
set(previous "")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} previous)
endif()
if(NOT previous STREQUAL content)
  file(WRITE ${OUTPUT} "${content}")
endif()
