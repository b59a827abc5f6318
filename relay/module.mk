# relay/: DERP relay + STUN server library, wiremesh-derper, and the agent-side
# DERP client, STUN client and netcheck (compiled into librelay.a).

RELAY_SRCS := relay/stun.c relay/stun_server.c relay/relay_net.c relay/derp_frame.c \
	relay/derp_server.c relay/derp_verify.c \
	$(wildcard relay/derp_map.c client-agent/derp_client.c client-agent/stun_client.c \
	  client-agent/netcheck.c)
RELAY_LIB := $(BUILD)/librelay.a
$(RELAY_LIB): $(RELAY_SRCS:%.c=$(BUILD)/%.o)
LIBS += $(RELAY_LIB)

BINARIES += $(BIN)/wiremesh-derper
$(BIN)/wiremesh-derper: $(BUILD)/relay/derper_main.o $(BUILD)/relay/derper_debug.o $(RELAY_LIB) $(COMMON_LIB)
