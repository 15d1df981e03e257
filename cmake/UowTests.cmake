# UowTests.cmake - register cmocka suites with CTest, one CTest test per cmocka test.
#
#   uow_add_test_suite(<name> <source>... [SOURCES <source>...]
#                      [STORES <store>...]     # sqlite postgresql: run every test once per store
#                      [NEEDS <server>...]     # postgres redis: servers the suite talks to
#                      [LIBS <lib>...]         # extra link libraries
#                      [LOCKS <lock>...]       # extra CTest RESOURCE_LOCKs
#                      [LABELS <label>...]     # extra CTest labels
#                      [TIMEOUT <seconds>])
#
# The suite becomes executable <name>, linked to uow_static (so internals are
# reachable), cmocka and the store drivers, with include/ and src/ on the
# include path. Every `cmocka_unit_test*(fn, ...)` entry found in the sources
# becomes a CTest test `<name>.<fn>`, or `<name>.<store>.<fn>` per store, which
# runs `<name> <fn>`; the executable must call cmocka_set_test_filter(argv[1])
# and return cmocka_run_group_tests()'s result. The sources are configure
# dependencies, so adding a test and rebuilding registers it. In a suite with
# STORES, a test named `sqlite_...` or `postgresql_...` is about that store
# alone and is registered for it only (never as a skipped test of the others).
#
# Environment each test gets:
#   UOW_TEST_NAME      the cmocka test name
#   UOW_TEST_STORE     sqlite | postgresql (only with STORES)
#   UOW_TEST_TMPDIR    a directory of its own, also its working directory
#   UOW_TEST_PG_URL    libpq URL of the throwaway server (store postgresql or NEEDS postgres)
#   UOW_TEST_PG_DIR    its servers directory, for `scripts/pg-test-server.sh restart DIR`
#                      (the same tests); only a test holding uow_postgres may restart it
#   UOW_TEST_REDIS_URL redis+unix:///path/redis.sock (NEEDS redis); UOW_TEST_REDIS_SOCKET the path
#   UOW_SOURCE_DIR     the source tree (test data)
# Servers: fixtures fixture.postgres.* / fixture.redis.* start and stop them
# (scripts/pg-test-server.sh, scripts/redis-test-server.sh) in
# ${CMAKE_BINARY_DIR}/servers. Tests that use a server hold its RESOURCE_LOCK,
# so under `ctest -j` they run one at a time against it, while SQLite-only
# tests run in parallel.
include_guard(GLOBAL)

find_package(PkgConfig REQUIRED)
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

set(UOW_TEST_TIMEOUT 300 CACHE STRING "Default CTest timeout (seconds) of each libuow test")
set(UOW_TEST_SERVERS_DIR "${CMAKE_BINARY_DIR}/servers")
set(UOW_PG_TEST_SERVER "${PROJECT_SOURCE_DIR}/scripts/pg-test-server.sh")
set(UOW_REDIS_TEST_SERVER "${PROJECT_SOURCE_DIR}/scripts/redis-test-server.sh")

find_program(UOW_BASH bash REQUIRED)

# The scripts derive socket paths and the port from the directory alone, so the
# URLs are known now, before any server runs.
function(_uow_server_query script what outvar)
  execute_process(COMMAND "${UOW_BASH}" "${script}" ${what} "${UOW_TEST_SERVERS_DIR}"
    OUTPUT_VARIABLE out RESULT_VARIABLE rc ERROR_VARIABLE err
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0 OR out STREQUAL "")
    message(FATAL_ERROR "${script} ${what} failed: ${err}")
  endif()
  set(${outvar} "${out}" PARENT_SCOPE)
endfunction()
_uow_server_query("${UOW_PG_TEST_SERVER}" url UOW_TEST_PG_URL)
_uow_server_query("${UOW_REDIS_TEST_SERVER}" url UOW_TEST_REDIS_URL)
_uow_server_query("${UOW_REDIS_TEST_SERVER}" socket UOW_TEST_REDIS_SOCKET)
message(STATUS "libuow tests: UOW_TEST_PG_URL=${UOW_TEST_PG_URL}")
message(STATUS "libuow tests: UOW_TEST_REDIS_URL=${UOW_TEST_REDIS_URL}")

# Sanitizer settings for the tests themselves, so `ctest` in an ASan tree works
# without exporting anything; values in the environment at configure time win.
set(UOW_TEST_SANITIZER_ENV "")
if(UOW_SANITIZE)
  if(DEFINED ENV{ASAN_OPTIONS})
    list(APPEND UOW_TEST_SANITIZER_ENV "ASAN_OPTIONS=$ENV{ASAN_OPTIONS}")
  else()
    list(APPEND UOW_TEST_SANITIZER_ENV "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1")
  endif()
  if(DEFINED ENV{UBSAN_OPTIONS})
    list(APPEND UOW_TEST_SANITIZER_ENV "UBSAN_OPTIONS=$ENV{UBSAN_OPTIONS}")
  else()
    list(APPEND UOW_TEST_SANITIZER_ENV "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  endif()
endif()
# TSan: the first report fails the test; tests/tsan.supp names the reports
# from inside libpq, SQLite or hiredis that are not the library's.
if(UOW_TSAN)
  if(DEFINED ENV{TSAN_OPTIONS})
    list(APPEND UOW_TEST_SANITIZER_ENV "TSAN_OPTIONS=$ENV{TSAN_OPTIONS}")
  else()
    set(_uow_tsan_options "halt_on_error=1 second_deadlock_stack=1")
    if(EXISTS "${PROJECT_SOURCE_DIR}/tests/tsan.supp")
      string(APPEND _uow_tsan_options " suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp")
    endif()
    list(APPEND UOW_TEST_SANITIZER_ENV "TSAN_OPTIONS=${_uow_tsan_options}")
  endif()
endif()

# valgrind (cmake/UowValgrind.cmake): tests that must keep to a time budget
# may do less work under it (never skip), and say so.
if(UOW_VALGRIND)
  list(APPEND UOW_TEST_SANITIZER_ENV "UOW_TEST_VALGRIND=1")
endif()

# Define fixture.<kind>.start/stop once, the first time a test needs them.
function(_uow_server_fixture kind)
  get_property(done GLOBAL PROPERTY UOW_FIXTURE_${kind}_DEFINED)
  if(done)
    return()
  endif()
  set_property(GLOBAL PROPERTY UOW_FIXTURE_${kind}_DEFINED TRUE)
  if(kind STREQUAL "postgres")
    set(script "${UOW_PG_TEST_SERVER}")
  else()
    set(script "${UOW_REDIS_TEST_SERVER}")
  endif()
  add_test(NAME fixture.${kind}.start
    COMMAND "${UOW_BASH}" "${script}" start "${UOW_TEST_SERVERS_DIR}")
  add_test(NAME fixture.${kind}.stop
    COMMAND "${UOW_BASH}" "${script}" stop "${UOW_TEST_SERVERS_DIR}")
  set_tests_properties(fixture.${kind}.start PROPERTIES
    FIXTURES_SETUP ${kind} RESOURCE_LOCK uow_server_${kind} TIMEOUT 120 LABELS fixture)
  set_tests_properties(fixture.${kind}.stop PROPERTIES
    FIXTURES_CLEANUP ${kind} RESOURCE_LOCK uow_server_${kind} TIMEOUT 120 LABELS fixture)
endfunction()

# The cmocka test names registered in the given sources, in order, without duplicates.
# An entry may be wrapped after its parenthesis (clang-format does that to long
# names): the name is then the first word of the next line.
function(_uow_scan_cmocka_tests outvar)
  set(names "")
  foreach(src IN LISTS ARGN)
    file(READ "${src}" text)
    # One list item per line: the code's semicolons, brackets and backslashes
    # must neither split lines nor join them (none is part of a test name).
    string(REPLACE ";" " " text "${text}")
    string(REPLACE "[" " " text "${text}")
    string(REPLACE "]" " " text "${text}")
    string(REPLACE "\\" " " text "${text}")
    string(REPLACE "\n" ";" lines "${text}")
    set(wrapped FALSE)
    foreach(line IN LISTS lines)
      if(wrapped)
        set(wrapped FALSE)
        if(line MATCHES "^[ \t]*([A-Za-z_][A-Za-z0-9_]*)")
          list(APPEND names "${CMAKE_MATCH_1}")
        endif()
        continue()
      endif()
      if(NOT line MATCHES "cmocka_unit_test[A-Za-z_]*[ \t]*\\(")
        continue()
      endif()
      string(REGEX REPLACE "//.*$" "" line "${line}")
      if(line MATCHES "^[ \t]*(/?\\*|#[ \t]*define)")
        continue()  # comments and macro definitions
      endif()
      string(REGEX MATCHALL "cmocka_unit_test[A-Za-z_]*[ \t]*\\([ \t]*[A-Za-z_][A-Za-z0-9_]*"
        entries "${line}")
      foreach(entry IN LISTS entries)
        string(REGEX REPLACE ".*\\([ \t]*" "" name "${entry}")
        list(APPEND names "${name}")
      endforeach()
      if(line MATCHES "cmocka_unit_test[A-Za-z_]*[ \t]*\\([ \t]*$")
        set(wrapped TRUE)
      endif()
    endforeach()
  endforeach()
  list(REMOVE_DUPLICATES names)
  set(${outvar} "${names}" PARENT_SCOPE)
endfunction()

function(uow_add_test_suite name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "TIMEOUT" "SOURCES;STORES;NEEDS;LIBS;LOCKS;LABELS")
  set(sources ${ARG_UNPARSED_ARGUMENTS} ${ARG_SOURCES})
  if(NOT sources)
    message(FATAL_ERROR "uow_add_test_suite(${name}): no sources")
  endif()
  set(abs_sources "")
  foreach(src IN LISTS sources)
    get_filename_component(abs "${src}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND abs_sources "${abs}")
  endforeach()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT ${UOW_TEST_TIMEOUT})
  endif()

  add_executable(${name} ${abs_sources})
  target_include_directories(${name} PRIVATE
    "${PROJECT_SOURCE_DIR}/include" "${PROJECT_SOURCE_DIR}/src")
  target_link_libraries(${name} PRIVATE uow_static PkgConfig::CMOCKA
    PkgConfig::SQLITE3 PkgConfig::PQ PkgConfig::HIREDIS Threads::Threads m ${ARG_LIBS})

  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${abs_sources})
  _uow_scan_cmocka_tests(tests ${abs_sources})

  # Servers the whole suite needs, whatever the store.
  set(suite_needs "")
  foreach(need IN LISTS ARG_NEEDS)
    if(need MATCHES "^postgres(ql)?$")
      list(APPEND suite_needs postgres)
    elseif(need STREQUAL "redis")
      list(APPEND suite_needs redis)
    else()
      message(FATAL_ERROR "uow_add_test_suite(${name}): NEEDS ${need}: expected postgres or redis")
    endif()
  endforeach()

  set(variants "${ARG_STORES}")
  if(NOT variants)
    set(variants "-")  # no store dimension
  endif()

  if(NOT tests)
    message(WARNING "uow_add_test_suite(${name}): no cmocka_unit_test entries found; "
                    "registering the whole suite as one test (run without arguments)")
    set(tests "-")
  endif()

  foreach(store IN LISTS variants)
    set(needs ${suite_needs})
    if(store STREQUAL "postgresql" OR store STREQUAL "postgres")
      list(APPEND needs postgres)
      set(store postgresql)
    endif()
    if(store STREQUAL "redis")
      list(APPEND needs redis)
    endif()
    list(REMOVE_DUPLICATES needs)

    set(env "UOW_SOURCE_DIR=${PROJECT_SOURCE_DIR}" ${UOW_TEST_SANITIZER_ENV})
    set(fixtures "")
    set(locks ${ARG_LOCKS})
    set(labels ${name} ${ARG_LABELS})
    if(NOT store STREQUAL "-")
      list(APPEND env "UOW_TEST_STORE=${store}")
      list(APPEND labels ${store})
    endif()
    foreach(need IN LISTS needs)
      _uow_server_fixture(${need})
      list(APPEND fixtures ${need})
      list(APPEND locks uow_${need})
      list(APPEND labels ${need})
      if(need STREQUAL "postgres")
        list(APPEND env "UOW_TEST_PG_URL=${UOW_TEST_PG_URL}"
                        "UOW_TEST_PG_DIR=${UOW_TEST_SERVERS_DIR}")
      else()
        list(APPEND env "UOW_TEST_REDIS_URL=${UOW_TEST_REDIS_URL}"
                        "UOW_TEST_REDIS_SOCKET=${UOW_TEST_REDIS_SOCKET}")
      endif()
    endforeach()
    list(REMOVE_DUPLICATES labels)

    foreach(test IN LISTS tests)
      if(NOT store STREQUAL "-" AND test MATCHES "^(sqlite|postgresql)_" AND
         NOT test MATCHES "^${store}_")
        continue()
      endif()
      set(ctest_name ${name})
      if(NOT store STREQUAL "-")
        string(APPEND ctest_name ".${store}")
      endif()
      if(test STREQUAL "-")
        set(args "")
      else()
        string(APPEND ctest_name ".${test}")
        set(args "${test}")
      endif()
      set(workdir "${CMAKE_CURRENT_BINARY_DIR}/work/${ctest_name}")
      file(MAKE_DIRECTORY "${workdir}")
      add_test(NAME ${ctest_name} COMMAND ${UOW_TEST_LAUNCHER} $<TARGET_FILE:${name}> ${args}
               WORKING_DIRECTORY "${workdir}")
      set_tests_properties(${ctest_name} PROPERTIES
        ENVIRONMENT "${env};UOW_TEST_NAME=${test};UOW_TEST_TMPDIR=${workdir}"
        LABELS "${labels}"
        TIMEOUT ${ARG_TIMEOUT}
        # A filter that matches nothing runs 0 tests and "passes": call that a failure.
        FAIL_REGULAR_EXPRESSION "\\[==========\\] Running 0 test"
        SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
      if(fixtures)
        set_tests_properties(${ctest_name} PROPERTIES FIXTURES_REQUIRED "${fixtures}")
      endif()
      if(locks)
        set_tests_properties(${ctest_name} PROPERTIES RESOURCE_LOCK "${locks}")
      endif()
    endforeach()
  endforeach()
endfunction()
