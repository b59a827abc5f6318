# policy/: the policy engine (HuJSON, model, compiler, CLI), a static library
# with no dependency on the server. Also: the policy-cli test driver, the
# conformance runner (`make conformance`) and the benchmark (`make bench-policy`).

POLICY_SRCS := $(wildcard policy/*.c)
POLICY_OBJS := $(POLICY_SRCS:%.c=$(BUILD)/%.o)
POLICY_LIB  := $(BUILD)/libpolicy.a
POLICY_LIB_IF_ANY := $(POLICY_LIB)
$(POLICY_LIB): $(POLICY_OBJS)
LIBS += $(POLICY_LIB)

# A tiny driver for the offline subcommands, used by the tests (not installed).
$(BUILD)/policy-cli: $(BUILD)/policy/tools/policy_cli_driver.o $(POLICY_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

# Conformance with Tailscale's control plane (cases captured from it, kept in tests/conformance/tailscale-saas).
WM_CONFORMANCE_DIR ?= tests/conformance/tailscale-saas
$(BUILD)/policy-conformance: $(BUILD)/tests/conformance/runner.o $(POLICY_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

conformance: $(BUILD)/policy-conformance
	$(Q)$(BUILD)/policy-conformance $(WM_CONFORMANCE_DIR)

$(BUILD)/bench-policy: $(BUILD)/policy/tools/bench_policy.o $(POLICY_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

# change_fanout_p99_ms comes from the control-server load generator
# (tests/bench/control, --fanout-only) holding FANOUT_NODES map streams while
# a policy is PUT (acls, then the same as grants with app and via);
# FANOUT_NODES=0 skips it (n/a).
FANOUT_NODES ?= 10000
bench-policy: $(BUILD)/bench-policy $(BUILD)/bench-control $(BIN)/wiremesh-server
	$(Q)fan=n/a; gfan=n/a; if [ "$(FANOUT_NODES)" != 0 ]; then \
	  out=$$($(BUILD)/bench-control --nodes $(FANOUT_NODES) --fanout-only \
	    --server $(BIN)/wiremesh-server); \
	  fan=$$(echo "$$out" | sed -n 's/.* change_fanout_p99_ms=\([^ ]*\).*/\1/p'); \
	  gfan=$$(echo "$$out" | sed -n 's/.*change_fanout_grants_p99_ms=\([^ ]*\).*/\1/p'); fi; \
	$(BUILD)/bench-policy | sed "s|change_fanout_p99_ms=n/a|change_fanout_p99_ms=$${fan:-n/a}|"; \
	$(BUILD)/bench-policy --grants | sed "s|change_fanout_p99_ms=n/a|change_fanout_p99_ms=$${gfan:-n/a}|"

.PHONY: conformance bench-policy

# The integration tests use the driver and the conformance runner: build them
# with every `make binaries` (they stay in $(BUILD), not in bin/).
binaries: $(BUILD)/policy-cli $(BUILD)/policy-conformance
