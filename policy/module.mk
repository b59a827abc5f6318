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

bench-policy: $(BUILD)/bench-policy
	$(Q)$(BUILD)/bench-policy

.PHONY: conformance bench-policy

# The integration tests use the driver and the conformance runner: build them
# with every `make binaries` (they stay in $(BUILD), not in bin/).
binaries: $(BUILD)/policy-cli $(BUILD)/policy-conformance
