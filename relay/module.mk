# relay/: DERP relay + STUN server library, wiremesh-derper, and the DERP
# client, STUN client and netcheck shared by the agent and the relay's debug
# tools (all compiled into librelay.a; relay/ includes nothing from client-agent/).

RELAY_SRCS := relay/stun.c relay/stun_server.c relay/relay_net.c relay/derp_frame.c \
	relay/derp_server.c relay/derp_verify.c relay/derp_map.c \
	relay/derp_client.c relay/stun_client.c relay/netcheck.c
RELAY_LIB := $(BUILD)/librelay.a
$(RELAY_LIB): $(RELAY_SRCS:%.c=$(BUILD)/%.o)
LIBS += $(RELAY_LIB)

BINARIES += $(BIN)/wiremesh-derper
$(BIN)/wiremesh-derper: $(BUILD)/relay/derper_main.o $(BUILD)/relay/derper_debug.o $(BUILD)/relay/derper_acme.o $(RELAY_LIB) $(COMMON_LIB)

# Relay throughput against plain TLS on loopback (tests/bench/derp/bench_derp.c):
#   make bench-derp [BENCH_ARGS="--seconds 5 --hold 10000 --client raw|lib"]
$(BUILD)/bench-derp: $(BUILD)/tests/bench/derp/bench_derp.o $(RELAY_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

bench-derp: $(BIN)/wiremesh-derper $(BUILD)/bench-derp
	$(Q)$(BUILD)/bench-derp --derper $(BIN)/wiremesh-derper $(BENCH_ARGS)

# The same against the relay embedded in `wiremesh-server serve --derp`.
bench-derp-embedded: $(BIN)/wiremesh-server $(BIN)/wiremesh-derper $(BUILD)/bench-derp $(BUILD)/wm-node
	$(Q)WM_BIN=$(abspath $(BIN)) WM_TOP=$(CURDIR) WM_BENCH_DERP=$(abspath $(BUILD)/bench-derp) \
	  tests/bench/derp/bench-derp-embedded.sh $(BENCH_ARGS)

.PHONY: bench-derp bench-derp-embedded
