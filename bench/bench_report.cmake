# bench_report: `tpar report` on a synthesized 10,000-step run: load, render, write; page size;
# decimated (default) side by side with every point kept.
add_executable(bench_report ${CMAKE_CURRENT_LIST_DIR}/bench_report.c)
target_link_libraries(bench_report PRIVATE tpar)
set_target_properties(bench_report PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
