# Makefile - the commands to type. CMake does the building; this file strings
# the steps together.
#
#   make deps      install missing Debian packages (scripts/deps.sh)
#   make build     configure and build in build/ (RelWithDebInfo)
#   make demo      build, then run the enrollment example on a fresh database
#   make test      build and run every test, then again with ASan+UBSan in build-asan/
#   make install   install into PREFIX (default /usr/local)
#   make bench     build and run the benchmarks (bench/ defines a `bench` target)
#   make format    clang-format every .c/.h;  make format-check: only report
#   make clean     stop test servers left running, delete the build trees
#
# Variables: BUILD_DIR, ASAN_DIR, BUILD_TYPE, JOBS, PREFIX, CMAKE_FLAGS,
# ASAN_CC (compiler of the sanitizer build, default clang).

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

# The sanitizer tree's settings; the tests get them from CTest as well.
export ASAN_OPTIONS  ?= detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

FORMAT_DIRS := include src tests examples tools bench
FORMAT_FILES = $(shell find $(FORMAT_DIRS) -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null)

.PHONY: all deps configure build demo test test-release test-asan install bench \
        format format-check clean

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

# Both trees run even when the first fails, so one run shows every failure.
test: deps
	@status=0; \
	$(MAKE) --no-print-directory test-release || status=1; \
	$(MAKE) --no-print-directory test-asan || status=1; \
	if [ $$status -eq 0 ]; then echo "make test: all tests passed (release and sanitizer builds)"; \
	else echo "make test: FAILED (see above)" >&2; fi; \
	exit $$status

test-release: build
	$(CTEST) --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

test-asan: deps
	$(CMAKE) -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DUOW_SANITIZE=ON \
	  $(if $(ASAN_CC),-DCMAKE_C_COMPILER=$(ASAN_CC)) $(CMAKE_FLAGS)
	$(CMAKE) --build $(ASAN_DIR) -j$(JOBS)
	$(CTEST) --test-dir $(ASAN_DIR) --output-on-failure -j$(JOBS)

install: build
	$(CMAKE) --install $(BUILD_DIR) --prefix $(PREFIX)

bench: build
	@test -f bench/CMakeLists.txt || { echo "make bench: bench/CMakeLists.txt does not exist yet" >&2; exit 1; }
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS) --target bench

format:
	@command -v clang-format >/dev/null || { echo "make format: clang-format is not installed (apt-get install clang-format)" >&2; exit 1; }
	$(if $(FORMAT_FILES),clang-format -i $(FORMAT_FILES),@echo "make format: no files")

format-check:
	@command -v clang-format >/dev/null || { echo "make format-check: clang-format is not installed (apt-get install clang-format)" >&2; exit 1; }
	$(if $(FORMAT_FILES),clang-format --dry-run --Werror $(FORMAT_FILES),@echo "make format-check: no files")

# Servers a killed test run left behind belong to a build tree: stop them first.
clean:
	@for d in $(BUILD_DIR) $(ASAN_DIR); do \
	  if [ -d "$$d/servers" ]; then \
	    bash scripts/pg-test-server.sh stop "$$d/servers"; \
	    bash scripts/redis-test-server.sh stop "$$d/servers"; \
	  fi; \
	done
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
