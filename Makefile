# A thin layer over CMake. `make run` builds and runs the examples,
# `make test` builds and passes every test (ASan+UBSan Criterion suite,
# ThreadSanitizer stress programs, install check), `make install` installs.
# Missing Debian packages are installed with apt-get when run as root.

BUILD      ?= build
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEB_PKGS   := cmake pkg-config liburcu-dev libcriterion-dev gcc make
PC_MODULES := liburcu-cds liburcu-memb criterion

.PHONY: all deps release run test test-asan test-tsan test-install install bench clean

all: release

deps:
	@missing=""; \
	for m in $(PC_MODULES); do pkg-config --exists $$m 2>/dev/null || missing="yes"; done; \
	for c in cmake cc pkg-config; do command -v $$c >/dev/null 2>&1 || missing="yes"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $(DEB_PKGS)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null) \
	      || { echo "apt-get failed"; exit 1; }; \
	  else \
	    echo "missing dependencies; as root run: apt-get install $(DEB_PKGS)"; exit 1; \
	  fi; \
	fi

release: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DGS_BUILD_TESTS=OFF >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS)

run: release
	@echo "== examples/counter"; $(BUILD)/release/examples/counter
	@echo "== examples/many_servers"; $(BUILD)/release/examples/many_servers

test: test-asan test-tsan test-install
	@echo "all tests passed"

test-asan: deps
	cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DGS_SANITIZE=address -DGS_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/asan -j $(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure --jobs 1

test-tsan: deps
	cmake -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGS_SANITIZE=thread \
	  -DGS_BUILD_TESTS=OFF -DGS_BUILD_STRESS=ON -DGS_BUILD_EXAMPLES=OFF -DGS_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/tsan -j $(JOBS)
	cd $(BUILD)/tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure --jobs 1

# Installs into a staging prefix and builds a tiny program against it, with
# pkg-config and with find_package(genserver).
test-install: release
	sh tests/install/check.sh $(BUILD)/release $(BUILD)/stage

install: release
	cmake --install $(BUILD)/release --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
