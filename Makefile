# A thin layer over CMake. `make run` builds and runs the examples,
# `make test` builds and passes every test (ASan+UBSan Criterion suite,
# ThreadSanitizer stress programs, install check, the stress programs and
# a soak for aarch64 under qemu-user), `make install` installs.
# Missing Debian packages are installed with apt-get when run as root.

BUILD      ?= build
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEB_PKGS   := cmake pkg-config liburcu-dev libcriterion-dev gcc make
PC_MODULES := liburcu-cds liburcu-memb criterion

.PHONY: all deps release run test test-asan test-tsan test-install test-aarch64 install bench clean

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
	@echo "== examples/session"; $(BUILD)/release/examples/session
	@echo "== examples/ticker"; $(BUILD)/release/examples/ticker

test: test-asan test-tsan test-install test-aarch64
	@echo "all tests passed"

test-asan: deps
	cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DGS_SANITIZE=address -DGS_BUILD_BENCH=OFF -DGS_BUILD_SOAK=ON >/dev/null
	cmake --build $(BUILD)/asan -j $(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure --jobs 1

test-tsan: deps
	cmake -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGS_SANITIZE=thread \
	  -DGS_BUILD_TESTS=OFF -DGS_BUILD_STRESS=ON -DGS_BUILD_SOAK=ON -DGS_BUILD_EXAMPLES=OFF -DGS_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/tsan -j $(JOBS)
	cd $(BUILD)/tsan && ctest --output-on-failure --jobs 1

# Installs into a staging prefix and builds a tiny program against it, with
# pkg-config and with find_package(genserver).
test-install: release
	sh tests/install/check.sh $(BUILD)/release $(BUILD)/stage

install: release
	cmake --install $(BUILD)/release --prefix $(PREFIX)

# The runtime on aarch64: the context switch, the stress programs and a
# short soak, cross-compiled and run under qemu-user (tests/aarch64/run.sh
# says what that shows and what it cannot). It needs a cross compiler,
# qemu and arm64 liburcu, installed when run as root (about a minute).
test-aarch64:
	sh tests/aarch64/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)

# ---- benchmarks (bench/README.md) ------------------------------------------
# `make bench` builds Release in $(BUILD)/release, runs every workload of
# gsbench (one process each), writes bench/results/<date>-<host>.jsonl,
# prints the table and draws bench/results/latest.svg. QUICK=1: smoke run.
# PEERS=file.jsonl: peer results to compare with. `make bench-peers` runs
# the peer suite first (../shared/peers/run.sh) and compares with it.
# `make bench-micro` runs the queue micro-benchmarks.
BENCH_RESULTS ?= bench/results
BENCH_STAMP   := $(shell date +%Y%m%d-%H%M%S)-$(shell hostname -s 2>/dev/null || echo host)
BENCH_OUT     ?= $(BENCH_RESULTS)/$(BENCH_STAMP).jsonl
BENCH_TIMERS  ?= ON
PEERS_RUN     ?= ../shared/peers/run.sh
PEERS         ?=
QUICK         ?=
BENCH_ARGS     = $(if $(QUICK),--quick) $(if $(WORKERS),--workers $(WORKERS))
GSBENCH        = $(BUILD)/release/bench/gsbench

.PHONY: bench-build bench-run bench-report bench-peers bench-micro bench-tools

bench-build: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DGS_BUILD_TESTS=OFF \
	  -DGS_BUILD_BENCH=ON -DGS_BENCH_TIMERS=$(BENCH_TIMERS) >/dev/null
	cmake --build $(BUILD)/release -j $(JOBS) --target gsbench micro_queues

# gnuplot draws the chart; installed when missing and root.
bench-tools:
	@command -v python3 >/dev/null 2>&1 || { echo "bench: python3 is needed for the table"; exit 1; }
	@if ! command -v gnuplot >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: gnuplot-nox"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null) \
	      || echo "bench: apt-get install gnuplot-nox failed; no chart"; \
	  else echo "bench: gnuplot missing (as root: apt-get install gnuplot-nox); no chart"; fi; \
	fi

# Runs the workloads; a failed check fails the target only after the
# table and chart have been made.
bench: bench-build bench-tools
	@rc=0; sh bench/run.sh $(GSBENCH) $(BENCH_OUT) $(BENCH_ARGS) >/dev/null || rc=1; \
	$(MAKE) --no-print-directory bench-report BENCH_OUT="$(BENCH_OUT)" PEERS="$(PEERS)" || rc=1; \
	if [ $$rc -ne 0 ]; then echo "bench: a workload failed its check (see $(BENCH_OUT))"; fi; exit $$rc

# Table and chart of BENCH_OUT (plus PEERS when given).
bench-report:
	@python3 bench/table.py $(BENCH_OUT) $(if $(PEERS),--peers $(PEERS)) \
	  --md $(BENCH_RESULTS)/latest.md --dat $(BENCH_RESULTS)/latest.dat; rc=$$?; \
	if command -v gnuplot >/dev/null 2>&1; then \
	  gnuplot -e "datafile='$(BENCH_RESULTS)/latest.dat'; outfile='$(BENCH_RESULTS)/latest.svg'; \
	    subtitle='$(notdir $(BENCH_OUT)) $(if $(PEERS),vs $(notdir $(PEERS)),), $(shell nproc) CPUs'" bench/chart.gp \
	  && echo "bench: chart in $(BENCH_RESULTS)/latest.svg"; \
	fi; exit $$rc

bench-peers: bench-build bench-tools
	@mkdir -p $(BENCH_RESULTS)
	@bash $(PEERS_RUN) $(BENCH_RESULTS)/$(BENCH_STAMP)-peers.jsonl $(BENCH_ARGS) >/dev/null \
	  || echo "bench: some peer runs failed or timed out (see the file)"
	@$(MAKE) --no-print-directory bench BENCH_OUT=$(BENCH_OUT) PEERS=$(BENCH_RESULTS)/$(BENCH_STAMP)-peers.jsonl

bench-micro: bench-build
	@mkdir -p $(BENCH_RESULTS)
	$(BUILD)/release/bench/micro_queues $(if $(QUICK),--quick) | tee $(BENCH_RESULTS)/$(BENCH_STAMP)-micro.jsonl

# ---- soak (tests/soak/soak.c) ----------------------------------------------
# `make soak SECONDS=600 [SEED=S]` builds Release in $(BUILD)/soak and runs
# the seeded randomized soak for SECONDS, printing the operation counts.
# A failing run prints its seed; pass it back with SEED= to replay the same
# operation sequences. WORKERS= and SERVERS= are passed through when set.
SECONDS ?= 30
SEED    ?=
SERVERS ?=
.PHONY: soak
soak: deps
	cmake -S . -B $(BUILD)/soak -DCMAKE_BUILD_TYPE=Release -DGS_BUILD_SOAK=ON -DGS_BUILD_TESTS=OFF \
	  -DGS_BUILD_EXAMPLES=OFF -DGS_BUILD_BENCH=OFF >/dev/null
	cmake --build $(BUILD)/soak -j $(JOBS) --target soak
	$(BUILD)/soak/soak --seconds $(SECONDS) $(if $(SEED),--seed $(SEED)) \
	  $(if $(SERVERS),--servers $(SERVERS)) $(if $(WORKERS),--workers $(WORKERS))
