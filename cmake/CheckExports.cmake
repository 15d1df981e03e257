# CheckExports.cmake - fail unless libuow.so exports only public uow_ symbols.
#
# Run as: cmake -DLIB=path/to/libuow.so -DNM=nm -P CheckExports.cmake
# Internal functions are named uow__name and must stay hidden (-fvisibility=
# hidden plus src/uow.map); nothing without the uow_ prefix may leave either.
if(NOT LIB OR NOT EXISTS "${LIB}")
  message(FATAL_ERROR "CheckExports: LIB='${LIB}' not found")
endif()
if(NOT NM)
  set(NM nm)
endif()
execute_process(COMMAND "${NM}" -D --defined-only "${LIB}"
  OUTPUT_VARIABLE out RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "CheckExports: ${NM} failed: ${err}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(bad "")
set(count 0)
foreach(line IN LISTS lines)
  # "<address> <type> <name>[@version]"
  if(NOT line MATCHES "^[0-9a-fA-F]* +([A-Za-z]) +([^ @]+)")
    continue()
  endif()
  set(type "${CMAKE_MATCH_1}")
  set(name "${CMAKE_MATCH_2}")
  if(type STREQUAL "A")  # version node names
    continue()
  endif()
  if(name MATCHES "^uow_[A-Za-z0-9]")
    math(EXPR count "${count} + 1")
  else()
    list(APPEND bad "${name}")
  endif()
endforeach()
if(bad)
  list(JOIN bad "\n  " bad_text)
  message(FATAL_ERROR "CheckExports: ${LIB} exports symbols outside the public API:\n  ${bad_text}")
endif()
if(count EQUAL 0)
  message(FATAL_ERROR "CheckExports: ${LIB} exports no uow_ symbol at all")
endif()
message(STATUS "CheckExports: ${count} public symbols, nothing else")
