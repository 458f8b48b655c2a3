# The front door. `make run` and `make test` each work alone on a fresh Debian machine:
# they install what is missing (as root), build, and run.
BUILD     ?= build
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
PREFIX    ?= /usr/local

# Sanitizer builds: -O1 keeps them quick; leaks inside Open MPI itself are not ours.
SAN_ENV = ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
          LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps deps-test build run test test-sanitize test-asan test-ubsan test-tsan san-run bench install clean help

all: build

help:
	@echo "make run            install deps, build, run the main job"
	@echo "make test           install deps, build, run the whole suite (release + sanitizer build)"
	@echo "make test-asan      the suite under AddressSanitizer"
	@echo "make test-ubsan     the suite under UndefinedBehaviorSanitizer"
	@echo "make test-tsan      the comm and parallel tests under ThreadSanitizer (not in make test)"
	@echo "make bench          the benchmarks (tables and side-by-side ratios)"
	@echo "make install        install library, headers, CLI and tpar.pc under PREFIX=$(PREFIX)"
	@echo "make clean          remove build directories"

deps:
	@sh scripts/deps.sh build

deps-test:
	@sh scripts/deps.sh test

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

# The main job: train the `tiny` GPT at TP=2 on tinyshakespeare for a few minutes and save it,
# then sample from the checkpoint with tensor-parallel inference (`tpar generate`, KV cache).
RUN_ARGS ?= --model tiny --tp 2 --batch 16 --seq 64 --steps 800 --lr 3e-3 --warmup 30 \
            --val-every 100 --log-every 25
GEN_ARGS ?= --tp 2 --prompt "ROMEO:" --tokens 500
RUN_DIR ?= $(BUILD)/run
run: build
	rm -rf $(RUN_DIR)
	./$(BUILD)/tpar train --data data/tinyshakespeare.txt --save-dir $(RUN_DIR) --keep 1 $(RUN_ARGS)
	./$(BUILD)/tpar generate --ckpt $(RUN_DIR) $(GEN_ARGS)

test: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-sanitize

# One build with AddressSanitizer and UndefinedBehaviorSanitizer together runs the suite.
test-sanitize:
	$(MAKE) --no-print-directory san-run SAN=address,undefined SAN_DIR=build-sanitize

test-asan:
	$(MAKE) --no-print-directory san-run SAN=address SAN_DIR=build-asan

test-ubsan:
	$(MAKE) --no-print-directory san-run SAN=undefined SAN_DIR=build-ubsan

# ThreadSanitizer over the comm and parallel tests: tpar's own threads (the progress worker of
# non-blocking calls, the shm futex waits, Open MPI's progress under MPI_THREAD_MULTIPLE).
# Not part of `make test`: about 5 minutes on 2 cores, build included. Shm collectives
# spin-wait, which TSan slows 10-50x, so the largest rank counts (label notsan) are left out.
# tests/tsan.supp: lock-order reports about Open MPI's own TCP transport (see the file).
# OMP_NUM_THREADS=1: libgomp is not built with TSan, so its barriers are invisible to it and any
# `omp parallel` region (kernels, oneDNN) would report false races; these tests are about tpar's
# threads and processes, not the kernels' OpenMP.
TSAN_ENV = TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp \
           OMP_NUM_THREADS=1
test-tsan: deps-test
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" \
	      -DTPAR_SANITIZE=thread $(CMAKE_ARGS)
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && $(TSAN_ENV) ctest --output-on-failure -j $(JOBS) -L comm -LE notsan
	cd build-tsan && $(TSAN_ENV) ctest --output-on-failure -j $(JOBS) -R '^test_parallel' -LE notsan

san-run: deps-test
	cmake -S . -B $(SAN_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" \
	      -DTPAR_SANITIZE=$(SAN) $(CMAKE_ARGS)
	cmake --build $(SAN_DIR) -j $(JOBS)
	cd $(SAN_DIR) && $(SAN_ENV) ctest --output-on-failure -j $(JOBS) -LE nosan

bench: build
	sh bench/run.sh $(BUILD)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) build-sanitize build-asan build-ubsan build-tsan
