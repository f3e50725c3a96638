# Thin wrapper over CMake + CTest; the README's commands.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all run test test-sanitize bench clean

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

run: all
	BIN_DIR=$(abspath $(BUILD))/bin deploy/run.sh

test: all
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 300

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer (CI runs it).
test-sanitize:
	$(MAKE) BUILD=build-sanitize CMAKE_FLAGS=-DHEARTY_SANITIZE=ON test

bench: all
	python3 bench/bench.py --bin-dir $(abspath $(BUILD))/bin $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) build-sanitize
