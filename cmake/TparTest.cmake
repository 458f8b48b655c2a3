# Test registration.
#
#   tpar_add_test(NAME
#                 SOURCES a.c [b.c ...]
#                 [RANKS 1 2 4 ...]       # run under `tpar launch -n N` (shm backend), one CTest test per N
#                 [MPI_RANKS 2 4 ...]     # also run under mpiexec with TPAR_COMM=mpi (when MPI is built)
#                 [ARGS ...] [LABELS ...] [TIMEOUT seconds] [LIBS ...] [ENV VAR=value ...])
#
# Without RANKS the test runs as one plain process named NAME. With RANKS each count N gives
# a test NAME_npN; CTest's PROCESSORS property is set to N so `ctest -j` does not pile
# oversubscribed multi-rank tests on top of each other. A test that cannot run here prints
# "skipped: <reason>" and exits 0; CTest then reports it as skipped, not passed.
# Under the sanitizers, leak reports from inside Open MPI are suppressed by tests/lsan.supp;
# that needs full stacks (its components' frames alone have no module name after unloading),
# so every test run under mpiexec gets these options. Harmless in other builds.
set(TPAR_MPI_TEST_ENV "ASAN_OPTIONS=abort_on_error=0:detect_leaks=1:fast_unwind_on_malloc=0")

function(tpar_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;RANKS;MPI_RANKS;ARGS;LABELS;LIBS;ENV" ${ARGN})
  if(NOT T_SOURCES)
    message(FATAL_ERROR "tpar_add_test(${name}): SOURCES is required")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE tpar ${T_LIBS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)

  set(_tests "")
  if(NOT T_RANKS AND NOT T_MPI_RANKS)
    add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
    list(APPEND _tests ${name})
  endif()
  foreach(_n IN LISTS T_RANKS)
    add_test(NAME ${name}_np${_n}
             COMMAND tpar_cli launch -n ${_n} -- $<TARGET_FILE:${name}> ${T_ARGS})
    set_tests_properties(${name}_np${_n} PROPERTIES PROCESSORS ${_n})
    list(APPEND _tests ${name}_np${_n})
  endforeach()
  if(TPAR_HAVE_MPI)
    foreach(_n IN LISTS T_MPI_RANKS)
      add_test(NAME ${name}_mpi_np${_n}
               COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${_n}
                       -x TPAR_COMM=mpi $<TARGET_FILE:${name}> ${T_ARGS})
      set_tests_properties(${name}_mpi_np${_n} PROPERTIES PROCESSORS ${_n}
                           ENVIRONMENT "TPAR_COMM=mpi;${TPAR_MPI_TEST_ENV}")
      list(APPEND _tests ${name}_mpi_np${_n})
    endforeach()
  endif()
  foreach(_t IN LISTS _tests)
    set_tests_properties(${_t} PROPERTIES
      TIMEOUT ${T_TIMEOUT}
      LABELS "${T_LABELS}"
      SKIP_REGULAR_EXPRESSION "skipped: ")
    if(T_ENV)
      set_property(TEST ${_t} APPEND PROPERTY ENVIRONMENT ${T_ENV})
    endif()
  endforeach()
endfunction()

#   tpar_add_py_test(NAME SCRIPT [ARGS ...] [LABELS ...] [TIMEOUT seconds] [PROCESSORS n])
#
# A test driven by a Python script (end-to-end runs of the tpar program, independent reference
# numbers). It runs with the system python3, /usr/bin first since Debian's numpy and torch live
# there; where there is none the test reports "skipped: python3 not found".
find_program(TPAR_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(TPAR_PYTHON3 python3)
function(tpar_add_py_test name script)
  cmake_parse_arguments(T "" "TIMEOUT;PROCESSORS" "ARGS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_PROCESSORS)
    set(T_PROCESSORS 1)
  endif()
  if(TPAR_PYTHON3)
    add_test(NAME ${name} COMMAND ${TPAR_PYTHON3} ${script} ${T_ARGS})
  else()
    add_test(NAME ${name} COMMAND sh -c "echo 'skipped: python3 not found'")
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} PROCESSORS ${T_PROCESSORS} LABELS "${T_LABELS}"
                                          SKIP_REGULAR_EXPRESSION "skipped: ")
endfunction()
