# tests/: one Check runner for every unit suite, integration scripts, fuzzers.
#
# Every tests/unit/NAME_test.c defines `Suite *NAME_suite(void);` and is
# found by name: no list to edit when a suite is added.

UNIT_SRCS   := $(sort $(wildcard tests/unit/*_test.c))
UNIT_NAMES  := $(patsubst tests/unit/%_test.c,%,$(UNIT_SRCS))
UNIT_OBJS   := $(UNIT_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/tests/unit/runner.o \
               $(BUILD)/tests/unit/pgtest.o
RUNNER      := $(BUILD)/wiremesh-unit-tests

$(BUILD)/tests/suites.inc: $(UNIT_SRCS) tests/module.mk
	@mkdir -p $(dir $@)
	$(Q)printf '%s\n' $(foreach n,$(UNIT_NAMES),'SUITE($(n))') > $@.tmp && \
	  (cmp -s $@.tmp $@ || mv $@.tmp $@); rm -f $@.tmp

$(BUILD)/tests/unit/runner.o: CFLAGS += -I$(BUILD)/tests
$(BUILD)/tests/unit/runner.o: $(BUILD)/tests/suites.inc

$(RUNNER): $(UNIT_OBJS) $(LIBS) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJS) -Wl,--start-group $(LIBS) $(COMMON_LIB) -Wl,--end-group $(LDLIBS) $(CHECK_LIBS)

unit: binaries $(RUNNER)
	$(Q)WM_BIN=$(abspath $(BIN)) WM_TOP=$(CURDIR) $(RUNNER)

integration: binaries
	$(Q)WM_BIN=$(abspath $(BIN)) WM_TOP=$(CURDIR) tests/run-integration.sh

test: test-deps
	$(Q)$(MAKE) --no-print-directory binaries $(RUNNER)
	$(Q)WM_BIN=$(abspath $(BIN)) WM_TOP=$(CURDIR) tests/run-all.sh $(RUNNER)

# libFuzzer targets: tests/fuzz/fuzz_NAME.c, built with clang into build/fuzz/.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
fuzz:
	$(Q)$(MAKE) --no-print-directory CC=clang SANITIZE=fuzzer-no-link,address,undefined \
	  BUILD=build/fuzzobj BIN=build/fuzzobj/bin $(FUZZ_BINS)

build/fuzz/%: tests/fuzz/%.c $(LIBS) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(CSTD) $(WARN) -g -O1 -I. $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< \
	  -Wl,--start-group $(LIBS) $(COMMON_LIB) -Wl,--end-group $(LDLIBS)

# Runs each fuzzer over its seed corpus (and briefly beyond) as a regression test.
fuzz-smoke: fuzz
	$(Q)tests/fuzz/run-smoke.sh

.PHONY: fuzz-smoke

# Test tools (not installed): a reference node client.
$(BUILD)/wm-node: $(BUILD)/tests/tools/wm-node.o $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)
binaries: $(BUILD)/wm-node

# Lost-update race driver (tests/integration/server_race.sh).
$(BUILD)/wm-race: $(BUILD)/tests/tools/wm-race.o $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)
binaries: $(BUILD)/wm-race

# Control-server load generator (tests/bench/control/bench_control.c):
#   make bench-control NODES=N [BENCH_ARGS=--policy-fanout]
NODES ?= 1000
$(BUILD)/bench-control: $(BUILD)/tests/bench/control/bench_control.o $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

bench-control: $(BIN)/wiremesh-server $(BUILD)/bench-control
	$(Q)$(BUILD)/bench-control --nodes $(NODES) --server $(BIN)/wiremesh-server $(BENCH_ARGS)

# Replicas on PostgreSQL (the same generator, --ha; docs/benchmarks.md):
#   make bench-ha [NODES=30000] [REPLICAS=3] [BENCH_ARGS=...]
REPLICAS ?= 3
bench-ha: NODES = 30000
bench-ha: $(BIN)/wiremesh-server $(BUILD)/bench-control
	$(Q)$(BUILD)/bench-control --ha --nodes $(NODES) --replicas $(REPLICAS) \
	  --server $(BIN)/wiremesh-server --pg-script tests/tools/pg.sh $(BENCH_ARGS)
.PHONY: bench-ha

# The concurrency tests against a ThreadSanitizer build of the server
# (build/tsan): any data race report in a server log fails them.
TSAN_TESTS := server_race server_concurrency server_ha
tsan-concurrency:
	$(Q)$(MAKE) --no-print-directory SANITIZE=thread binaries
	$(Q)for t in $(TSAN_TESTS); do \
	  TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1" WM_BIN=$(abspath build/tsan/bin) \
	  WM_BUILD=$(abspath build/tsan) WM_TOP=$(CURDIR) bash tests/integration/$$t.sh || exit 1; done
.PHONY: tsan-concurrency
