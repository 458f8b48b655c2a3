# bench_comm: tpar shm all-reduce vs MPI_Allreduce side by side (needs the MPI backend).
if(TPAR_HAVE_MPI)
  add_executable(bench_comm ${CMAKE_CURRENT_LIST_DIR}/bench_comm.c)
  target_link_libraries(bench_comm PRIVATE tpar)
  set_target_properties(bench_comm PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
endif()
