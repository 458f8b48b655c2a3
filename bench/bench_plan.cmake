# bench_plan: `tpar plan`'s step time and communication share against `tpar train` here,
# driven by bench/bench_plan.py.
tpar_bench_script(bench_plan "'${TPAR_PYTHON3}' '${PROJECT_SOURCE_DIR}/bench/bench_plan.py' '$<TARGET_FILE:tpar_cli>' '${PROJECT_SOURCE_DIR}/data/tinyshakespeare.txt'")
