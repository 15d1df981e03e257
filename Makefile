# Makefile - the commands to type. CMake does the building; this file strings
# the steps together.
#
#   make deps      install missing Debian packages (scripts/deps.sh)
#   make build     configure and build in build/ (RelWithDebInfo)
#   make demo      build, then run the enrollment example on a fresh database
#   make test      build and run every test, then again with ASan+UBSan in build-asan/,
#                  then the threaded tests with TSan (make tsan, about 10 s), then
#                  all of them under valgrind memcheck (make valgrind, about 9 min)
#   make install   install into PREFIX (default /usr/local)
#   make bench     build and run the benchmarks (bench/ defines a `bench` target)
#   make stress    STRESS_PROCS (8) processes of enrollment units for STRESS_SECONDS
#                  (60; 10 for a smoke run) on SQLite and on a throwaway PostgreSQL,
#                  a relay in another process, then checks every figure; then
#                  STRESS_ASAN_SECONDS (5; 0 skips) of the same under ASan+UBSan in
#                  build-asan/ with LeakSanitizer on (stress/run.sh)
#   make tsan      build the test suites with ThreadSanitizer (clang) in build-tsan/
#                  and run the tests labelled `threads` (tests/CMakeLists.txt)
#   make valgrind  build without sanitizers in build-valgrind/ (VALGRIND_BUILD_TYPE,
#                  RelWithDebInfo) and run the whole CTest suite with every program
#                  of the tree under valgrind memcheck: any error or definite or
#                  indirect leak fails its test (about 9 min on two cores)
#   make fuzz      build tests/fuzz/ with libFuzzer (clang) in build-fuzz/ and run
#                  each target FUZZ_SECONDS (default 60); new inputs go to
#                  build-fuzz/corpus/<name>/, findings to build-fuzz/findings/<name>/
#   make format    clang-format every .c/.h;  make format-check: only report
#   make clean     stop test servers left running, delete the build trees
#
# Variables: BUILD_DIR, ASAN_DIR, BUILD_TYPE, JOBS, PREFIX, CMAKE_FLAGS,
# ASAN_CC (compiler of the sanitizer build, default clang), TSAN_DIR,
# TSAN_CC (compiler of the TSan build, default clang), VALGRIND_DIR,
# VALGRIND_BUILD_TYPE, FUZZ_DIR,
# FUZZ_SECONDS, FUZZ_TARGETS (default: every tests/fuzz/fuzz_<name>.c), STRESS_SECONDS,
# STRESS_PROCS, STRESS_STORES (default "sqlite pg"), STRESS_ASAN_SECONDS.

SHELL := /bin/bash

BUILD_DIR   ?= build
ASAN_DIR    ?= build-asan
BUILD_TYPE  ?= RelWithDebInfo
JOBS        ?= 2
PREFIX      ?= /usr/local
CMAKE       ?= cmake
CTEST       ?= ctest
CMAKE_FLAGS ?=
ASAN_CC     ?= clang
FUZZ_DIR    ?= build-fuzz
TSAN_DIR    ?= build-tsan
TSAN_CC     ?= clang
VALGRIND_DIR ?= build-valgrind
VALGRIND_BUILD_TYPE ?= RelWithDebInfo
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
STRESS_SECONDS      ?= 60
STRESS_PROCS        ?= 8
STRESS_STORES       ?= sqlite pg
STRESS_ASAN_SECONDS ?= 5

# The sanitizer tree's settings; the tests get them from CTest as well.
export ASAN_OPTIONS  ?= detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

FORMAT_DIRS := include src tests examples tools bench stress
FORMAT_FILES = $(shell find $(FORMAT_DIRS) -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null)

.PHONY: all deps configure build demo test test-release test-asan tsan valgrind install bench \
        stress fuzz format format-check clean

all: build

deps:
	@bash scripts/deps.sh

configure: deps
	$(CMAKE) -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

build: configure
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS)

DEMO := $(BUILD_DIR)/examples/enrollment/enrollment
demo: build
	@test -x $(DEMO) || { echo "make demo: $(DEMO) was not built" >&2; exit 1; }
	rm -rf $(BUILD_DIR)/demo
	mkdir -p $(BUILD_DIR)/demo
	$(DEMO) --db $(BUILD_DIR)/demo/enrollment.db

# Every tree runs even when one fails, so one run shows every failure.
test: deps
	@status=0; \
	$(MAKE) --no-print-directory test-release || status=1; \
	$(MAKE) --no-print-directory test-asan || status=1; \
	$(MAKE) --no-print-directory tsan || status=1; \
	$(MAKE) --no-print-directory valgrind || status=1; \
	if [ $$status -eq 0 ]; then echo "make test: all tests passed (release, sanitizer and valgrind builds)"; \
	else echo "make test: FAILED (see above)" >&2; fi; \
	exit $$status

test-release: build
	$(CTEST) --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

test-asan: deps
	$(CMAKE) -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DUOW_SANITIZE=ON \
	  $(if $(ASAN_CC),-DCMAKE_C_COMPILER=$(ASAN_CC)) $(CMAKE_FLAGS)
	$(CMAKE) --build $(ASAN_DIR) -j$(JOBS)
	$(CTEST) --test-dir $(ASAN_DIR) --output-on-failure -j$(JOBS)

# ThreadSanitizer cannot share a tree with ASan. Only the suites holding a test
# labelled `threads` are built; the tree gives those tests TSAN_OPTIONS
# (halt_on_error=1 second_deadlock_stack=1, plus tests/tsan.supp if it exists).
tsan: deps
	$(CMAKE) -S . -B $(TSAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DUOW_TSAN=ON \
	  -DCMAKE_C_COMPILER=$(TSAN_CC) $(CMAKE_FLAGS)
	suites=$$($(CTEST) --test-dir $(TSAN_DIR) -N -L threads \
	  | sed -n 's/^ *Test *#[0-9]*: \([A-Za-z0-9_]*\)\..*/\1/p' | grep -v '^fixture$$' | sort -u); \
	test -n "$$suites" || { echo "make tsan: no test is labelled threads" >&2; exit 1; }; \
	$(CMAKE) --build $(TSAN_DIR) -j$(JOBS) --target $$suites
	$(CTEST) --test-dir $(TSAN_DIR) -L threads --output-on-failure -j$(JOBS)

# memcheck cannot run sanitized programs: a tree of its own. Optimised code as
# shipped, and a third faster than Debug, whose exact stacks are a
# VALGRIND_BUILD_TYPE=Debug away. tests/valgrind.supp holds the (commented)
# third-party suppressions.
valgrind: deps
	$(CMAKE) -S . -B $(VALGRIND_DIR) -DCMAKE_BUILD_TYPE=$(VALGRIND_BUILD_TYPE) -DUOW_VALGRIND=ON \
	  -DUOW_SANITIZE=OFF -DUOW_TSAN=OFF $(CMAKE_FLAGS)
	$(CMAKE) --build $(VALGRIND_DIR) -j$(JOBS)
	$(CTEST) --test-dir $(VALGRIND_DIR) --output-on-failure -j$(JOBS)

install: build
	$(CMAKE) --install $(BUILD_DIR) --prefix $(PREFIX)

bench: build
	@test -f bench/CMakeLists.txt || { echo "make bench: bench/CMakeLists.txt does not exist yet" >&2; exit 1; }
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS) --target bench

# The sanitizer tree builds only the stress program (and the library), not its tests.
STRESS_ASAN_BIN := $(if $(filter-out 0,$(STRESS_ASAN_SECONDS)),$(ASAN_DIR)/stress/stress_enrollment)
stress: build
	@test -f stress/CMakeLists.txt || { echo "make stress: stress/CMakeLists.txt does not exist" >&2; exit 1; }
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS) --target stress_enrollment
ifneq ($(STRESS_ASAN_BIN),)
	$(CMAKE) -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DUOW_SANITIZE=ON \
	  $(if $(ASAN_CC),-DCMAKE_C_COMPILER=$(ASAN_CC)) $(CMAKE_FLAGS)
	$(CMAKE) --build $(ASAN_DIR) -j$(JOBS) --target stress_enrollment
endif
	STRESS_BIN=$(BUILD_DIR)/stress/stress_enrollment STRESS_ASAN_BIN=$(STRESS_ASAN_BIN) \
	  STRESS_OUT=$(BUILD_DIR)/stress STRESS_SECONDS=$(STRESS_SECONDS) \
	  STRESS_PROCS=$(STRESS_PROCS) STRESS_STORES="$(STRESS_STORES)" \
	  STRESS_ASAN_SECONDS=$(STRESS_ASAN_SECONDS) bash stress/run.sh

# libFuzzer reads the committed corpus (tests/fuzz/corpus/<name>) and writes
# what it finds new into the scratch corpus, the first directory it is given;
# the committed one only changes by hand. Every target runs even when one fails.
fuzz: deps
	$(CMAKE) -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	  -DUOW_SANITIZE=ON -DUOW_FUZZ=ON $(CMAKE_FLAGS)
	$(CMAKE) --build $(FUZZ_DIR) -j$(JOBS) --target fuzz_targets
	@status=0; for t in $(FUZZ_TARGETS); do \
	  bin=$(FUZZ_DIR)/tests/fuzz/fuzz_$$t; \
	  if [ ! -x $$bin ]; then echo "make fuzz: $$bin was not built, skipped" >&2; continue; fi; \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/findings/$$t; \
	  echo "make fuzz: fuzz_$$t for $(FUZZ_SECONDS)s"; \
	  $$bin -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -close_fd_mask=3 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/findings/$$t/ \
	    $(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t 2>$(FUZZ_DIR)/findings/$$t.log \
	    || { status=1; echo "make fuzz: fuzz_$$t FAILED (see $(FUZZ_DIR)/findings/$$t.log)" >&2; }; \
	  grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' \
	    $(FUZZ_DIR)/findings/$$t.log || true; \
	done; \
	if [ $$status -eq 0 ]; then echo "make fuzz: no findings"; fi; \
	exit $$status

format:
	@command -v clang-format >/dev/null || { echo "make format: clang-format is not installed (apt-get install clang-format)" >&2; exit 1; }
	$(if $(FORMAT_FILES),clang-format -i $(FORMAT_FILES),@echo "make format: no files")

format-check:
	@command -v clang-format >/dev/null || { echo "make format-check: clang-format is not installed (apt-get install clang-format)" >&2; exit 1; }
	$(if $(FORMAT_FILES),clang-format --dry-run --Werror $(FORMAT_FILES),@echo "make format-check: no files")

# Servers a killed test run left behind belong to a build tree: stop them first.
clean:
	@for d in $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(VALGRIND_DIR) $(FUZZ_DIR); do \
	  if [ -d "$$d/servers" ]; then \
	    bash scripts/pg-test-server.sh stop "$$d/servers"; \
	    bash scripts/redis-test-server.sh stop "$$d/servers"; \
	  fi; \
	done
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(VALGRIND_DIR) $(FUZZ_DIR)
