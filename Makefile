# The two commands of distillery: `make demo` and `make test`. Both install what is missing first.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release
# The sanitizer build: clang, AddressSanitizer + UndefinedBehaviorSanitizer, libFuzzer targets.
# tests/sanitizer_tests.txt is the GoogleTest filter of the fast tests run under the sanitizers
# (the MNIST training tests are left out: they take minutes there).
SAN_BUILD ?= build-sanitize
SAN_TESTS ?= $(shell cat tests/sanitizer_tests.txt)
# make fuzz: each reader until it has tried FUZZ_RUNS inputs (or FUZZ_SECONDS have passed).
FUZZ_RUNS ?= 10000000
FUZZ_SECONDS ?= 14400

.PHONY: setup build demo test sanitize fuzz bench reliability docs clean

setup:
	@bash scripts/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/distillery experiment hinton2015 --profile quick

# The generated pages: docs/RESULTS.md, README.md's headline table, the explorations' indexes and
# docs/guide/configuration.md, from docs/results/ and the config schema.
docs: build
	$(BUILD)/distillery results

test: build sanitize
	cd $(BUILD) && ctest --output-on-failure -j1

$(SAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DDISTILLERY_FUZZ=ON \
	  -DDISTILLERY_BUILD_BENCH=OFF

# The fast unit tests under ASan + UBSan, then a bounded run of each fuzz target.
sanitize: setup $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j$(JOBS) --target distillery_tests fuzz_idx fuzz_config fuzz_checkpoint
	ASAN_OPTIONS=detect_leaks=0 DISTILLERY_DATA=$(CURDIR)/data $(SAN_BUILD)/tests/distillery_tests --gtest_filter='$(SAN_TESTS)'
	FUZZ_RUNS=0 bash fuzz/run.sh $(SAN_BUILD) 10

# A longer fuzzing run whose figures go to docs/RESULTS.md.
fuzz: sanitize
	FUZZ_RUNS=$(FUZZ_RUNS) bash fuzz/run.sh $(SAN_BUILD) $(FUZZ_SECONDS) docs/results/fuzz.json
	$(BUILD)/distillery results

# The fault-injection suite alone, recording its outcomes in docs/RELIABILITY.md.
reliability: build
	bash tests/reliability_test.sh $(BUILD)/distillery $(CURDIR) docs/RELIABILITY.md

bench: build
	bash bench/run.sh $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
