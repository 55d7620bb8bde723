# Two set-up commands: `make demo` and `make test`. Both install missing Debian packages first
# (with sudo when not root), then configure and build a Release build in build/.
BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
PACKAGES := cmake g++ make libdnnl-dev libyaml-cpp-dev libstb-dev catch2 nlohmann-json3-dev \
            libturbojpeg0-dev libjpeg62-turbo-dev libcli11-dev zlib1g-dev dataset-fashion-mnist \
            python3 python3-yaml python3-matplotlib
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all deps configure build test demo bench clean format

all: build

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

configure: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j$(JOBS)

demo: build
	$(BUILD_DIR)/bin/quickstart --data /usr/share/datasets/fashion-mnist --out runs/quickstart

bench: build
	python3 experiments/bench/run_ops.py --scion $(BUILD_DIR)/bin/bench_ops

format:
	find core nn data train init tests experiments -name '*.cpp' -o -name '*.h' -o -name '*.cu' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
