# bench_vs_rev: this build against another git revision (default HEAD, built into a temporary
# worktree), training and decode side by side, driven by bench/bench_vs_rev.py.
#   build/bench/bench_vs_rev --rev 3022aed      (or --old PATH_TO_TPAR)
tpar_bench_script(bench_vs_rev "'${TPAR_PYTHON3}' '${PROJECT_SOURCE_DIR}/bench/bench_vs_rev.py' '$<TARGET_FILE:tpar_cli>' '${PROJECT_SOURCE_DIR}'")
