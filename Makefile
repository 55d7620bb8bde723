# Two set-up commands: `make demo` and `make test`. Both install missing Debian packages first
# (with sudo when not root), then configure and build a Release build in build/.
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
PACKAGES := cmake g++ make libdnnl-dev libyaml-cpp-dev libstb-dev catch2 nlohmann-json3-dev \
            libturbojpeg0-dev libjpeg62-turbo-dev libcli11-dev zlib1g-dev libmatio-dev dataset-fashion-mnist \
            libopenmpi-dev openmpi-bin \
            python3 python3-yaml python3-matplotlib
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

FUZZ_SECONDS ?= 600
ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1:strict_string_checks=1
UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
FUZZ_PACKAGES := clang-14 libclang-rt-14-dev libomp-14-dev
# make test-arm64: the cross compiler and the emulator; the arm64 libraries go into a sysroot
# (tests/arm64/sysroot.sh), not onto this machine.
ARM64_PACKAGES := cmake make g++-aarch64-linux-gnu qemu-user-static python3
ARM64_DIR ?= build-arm64

.PHONY: all deps deps-fuzz configure build test test-arm64 demo bench fuzz fuzz-spec sanitize clean \
        format

all: build

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

# clang for libFuzzer (make fuzz), installed only when fuzzing.
deps-fuzz: deps
	@$(MAKE) --no-print-directory deps PACKAGES="$(FUZZ_PACKAGES)"

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

demo: build
	$(BUILD_DIR)/bin/quickstart --data /usr/share/datasets/fashion-mnist --out runs/quickstart

# Every libFuzzer target (tests/fuzz) for FUZZ_SECONDS each, two at a time, from seed corpora of
# the real data files; report in build-fuzz/fuzz/report.md, exit 1 on any finding.
fuzz: deps-fuzz
	cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DSCION_FUZZ=ON -DSCION_CUDA=OFF
	cmake --build build-fuzz -j$(JOBS) --target fuzz_all
	python3 tests/fuzz/make_corpus.py build-fuzz/fuzz/seeds
	python3 tests/fuzz/run_fuzzers.py build-fuzz --seconds $(FUZZ_SECONDS) --jobs $(JOBS)
	$(MAKE) --no-print-directory fuzz-spec

# The reproduction harness's spec parser (tests/experiments/fuzz_spec.py) for FUZZ_SECONDS:
# coverage-guided with atheris when the python3 on PATH has it (pip install atheris), else its
# own random generator. Any finding is saved and fails the target.
fuzz-spec: deps
	if python3 -c "import atheris, yaml" 2>/dev/null; then \
	  python3 tests/experiments/fuzz_spec.py --seconds $(FUZZ_SECONDS) --atheris; \
	else /usr/bin/python3 tests/experiments/fuzz_spec.py --seconds $(FUZZ_SECONDS); fi

# The whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer; any report fails.
# Line tables only (-g1): the sanitizers' reports still name file and line (inlined frames too),
# and the build from scratch took 924 s instead of 1,105 s with full debug info (-g) on a Zen 3.
# The library compiles at -O2, the test files at -O1 (CMakeLists.txt says why).
sanitize: deps
	cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSCION_SANITIZE=ON -DSCION_CUDA=OFF \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"
	cmake --build build-sanitize -j$(JOBS) --target scion_test_programs
	cd build-sanitize && ASAN_OPTIONS=$(ASAN_OPTIONS) UBSAN_OPTIONS=$(UBSAN_OPTIONS) \
	  ctest --output-on-failure -j$(JOBS)

# scion cross-built for arm64 Linux (tests/arm64/aarch64-linux-gnu.cmake) and a subset of its tests
# (the ctest label "emulated", CMakeLists.txt) run under qemu-aarch64-static as a Neoverse-N1.
test-arm64:
	@$(MAKE) --no-print-directory deps PACKAGES="$(ARM64_PACKAGES)"
	tests/arm64/sysroot.sh $(ARM64_DIR)/sysroot
	cmake -S . -B $(ARM64_DIR) -DCMAKE_TOOLCHAIN_FILE=tests/arm64/aarch64-linux-gnu.cmake \
	  -DCMAKE_BUILD_TYPE=Release
	cmake --build $(ARM64_DIR) -j$(JOBS) --target scion_test_programs
	cd $(ARM64_DIR) && ctest -L emulated --output-on-failure -j$(JOBS)

bench: build
	python3 experiments/bench/run_ops.py --scion $(BUILD_DIR)/bin/bench_ops

format:
	find core nn data train init tests experiments -name '*.cpp' -o -name '*.h' -o -name '*.cu' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
