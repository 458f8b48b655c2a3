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

.PHONY: all deps deps-test build run test test-sanitize test-asan test-ubsan san-run bench install clean help

all: build

help:
	@echo "make run            install deps, build, run the main job"
	@echo "make test           install deps, build, run the whole suite (release + sanitizer build)"
	@echo "make test-asan      the suite under AddressSanitizer"
	@echo "make test-ubsan     the suite under UndefinedBehaviorSanitizer"
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

# The main job: train the `tiny` GPT at TP=2 on tinyshakespeare for a few minutes, then sample.
RUN_ARGS ?= --model tiny --tp 2 --batch 16 --seq 64 --steps 800 --lr 3e-3 --warmup 30 \
            --val-every 100 --log-every 25 --sample 500
run: build
	./$(BUILD)/tpar train --data data/tinyshakespeare.txt $(RUN_ARGS)

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
	rm -rf $(BUILD) build-sanitize build-asan build-ubsan
