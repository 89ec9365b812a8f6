# The two commands of distillery: `make demo` and `make test`. Both install what is missing first.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: setup build demo test bench clean

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/distillery experiment hinton2015 --profile quick

test: build
	cd $(BUILD) && ctest --output-on-failure -j1

bench: build
	bash bench/run.sh $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
