# UowValgrind.cmake - run the test programs under valgrind memcheck (`make valgrind`).
#
# With -DUOW_VALGRIND=ON every CTest test that runs a program of this tree
# runs it under memcheck: the cmocka suites, the examples, the fuzz corpus
# replays, and the programs the shell-script tests call (uowctl and the
# examples, through wrapper scripts in ${CMAKE_BINARY_DIR}/valgrind/). A
# memcheck error, or a leak that is definitely or indirectly lost, makes the
# program exit with status 99, which fails its test. Memory still reachable at
# exit, and "possibly lost" blocks (libpq, SQLite and hiredis keep interior
# pointers), are not errors. tests/valgrind.supp holds the suppressions for
# third-party noise, each with the reason it is there.
#
# Defines, for every directory (this file is included before tests/, examples/
# and tools/ are added):
#   UOW_TEST_LAUNCHER         the valgrind command line, empty without UOW_VALGRIND;
#                             put it before $<TARGET_FILE:prog> in add_test(COMMAND ...)
#   uow_test_program(<var> <target>)
#                             sets <var> to what a script should run for <target>:
#                             its wrapper under valgrind, else $<TARGET_FILE:target>
# Tests can tell from UOW_TEST_VALGRIND=1 in their environment (part of
# UOW_TEST_SANITIZER_ENV) that they run under valgrind.
include_guard(GLOBAL)

option(UOW_VALGRIND "Run the test programs under valgrind memcheck (make valgrind)" OFF)

set(UOW_TEST_LAUNCHER "")
if(UOW_VALGRIND)
  if(UOW_SANITIZE OR UOW_TSAN)
    message(FATAL_ERROR "UOW_VALGRIND cannot run sanitized programs: use a tree without "
                        "UOW_SANITIZE and UOW_TSAN")
  endif()
  find_program(UOW_VALGRIND_COMMAND valgrind REQUIRED)
  set(UOW_TEST_LAUNCHER
      "${UOW_VALGRIND_COMMAND}" --tool=memcheck --quiet
      --leak-check=full --show-leak-kinds=definite,indirect
      --errors-for-leak-kinds=definite,indirect --error-exitcode=99
      # A forked child (the crash tests, the enrollment demo) is checked as
      # well; programs it execs (/bin/sh of the command sink) are not ours.
      --child-silent-after-fork=no --trace-children=no
      --num-callers=40
      "--suppressions=${PROJECT_SOURCE_DIR}/tests/valgrind.supp")
endif()

# What a test script runs for `target`: a wrapper that execs it under valgrind,
# so that scripts which take the program from a variable need no change.
function(uow_test_program var target)
  if(NOT UOW_VALGRIND)
    set(${var} "$<TARGET_FILE:${target}>" PARENT_SCOPE)
    return()
  endif()
  set(words "")
  foreach(word IN LISTS UOW_TEST_LAUNCHER)
    string(APPEND words " '${word}'")
  endforeach()
  set(wrapper "${CMAKE_BINARY_DIR}/valgrind/${target}")
  get_property(done GLOBAL PROPERTY UOW_VALGRIND_WRAPPER_${target})
  if(NOT done)
    set_property(GLOBAL PROPERTY UOW_VALGRIND_WRAPPER_${target} TRUE)
    file(GENERATE OUTPUT "${wrapper}"
      CONTENT "#!/bin/sh\n# ${target} under valgrind memcheck (cmake/UowValgrind.cmake)\nexec${words} '$<TARGET_FILE:${target}>' \"$@\"\n"
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                       WORLD_READ WORLD_EXECUTE)
  endif()
  set(${var} "${wrapper}" PARENT_SCOPE)
endfunction()
