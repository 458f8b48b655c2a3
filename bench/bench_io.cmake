# bench_io: checkpoint save (whole vs TP=2 blocks), commit, load (TP=1 vs TP=4 blocks).
add_executable(bench_io ${CMAKE_CURRENT_LIST_DIR}/bench_io.c)
target_link_libraries(bench_io PRIVATE tpar)
target_include_directories(bench_io PRIVATE ${PROJECT_SOURCE_DIR}/src)
set_target_properties(bench_io PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
