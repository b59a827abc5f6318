# client-agent/: the node agent's parts. Each part keeps its own variables;
# the userspace WireGuard engine uses the WG_ prefix.
#
# WireGuard engine library (embedded by the agent) and the standalone
# wiremesh-wg (drop-in for wireguard-go).
WG_SRCS := $(wildcard client-agent/wg/*.c)
WG_OBJS := $(WG_SRCS:%.c=$(BUILD)/%.o)
WG_LIB  := $(BUILD)/libwg.a
$(WG_LIB): $(WG_OBJS)
LIBS += $(WG_LIB)

$(BIN)/wiremesh-wg: $(BUILD)/client-agent/wiremesh-wg.o $(WG_LIB) $(COMMON_LIB)
BINARIES += $(BIN)/wiremesh-wg

# Throughput and latency through tunnels between two namespaces (root).
bench-wg: $(BIN)/wiremesh-wg
	$(Q)WM_BIN=$(abspath $(BIN)) WM_TOP=$(CURDIR) tests/bench/wg/bench-wg.sh

.PHONY: bench-wg

# Agent pure-logic libraries: disco codec, path state machine, packet filter,
# DNS codec and resolver, OS DNS settings.
AGENT_LIB_SRCS := client-agent/disco.c client-agent/paths.c client-agent/filter.c \
	client-agent/routes.c client-agent/dns_msg.c client-agent/resolver.c client-agent/dns_os.c
AGENT_LIB      := $(BUILD)/libagent.a
$(AGENT_LIB): $(AGENT_LIB_SRCS:%.c=$(BUILD)/%.o)
LIBS += $(AGENT_LIB)

# Packet filter benchmark: rule-set sizes, conntrack (prints figures).
$(BUILD)/bench-filter: $(BUILD)/tests/bench/filter/bench_filter.o $(AGENT_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)
bench-filter: $(BUILD)/bench-filter
	$(Q)$(BUILD)/bench-filter

.PHONY: bench-filter

# Node agent daemon and CLI (issue 6).
AGENTD_OBJS := $(addprefix $(BUILD)/client-agent/,agent.o agent_disco.o agent_netmap.o agent_cmd.o \
	agent_login.o agent_routes.o control_client.o localapi.o netcfg.o agent_dns.o)
$(BIN)/wiremeshd: $(BUILD)/client-agent/wiremeshd.o $(AGENTD_OBJS) $(AGENT_LIB) $(BUILD)/librelay.a \
	$(WG_LIB) $(COMMON_LIB)
$(BIN)/wiremesh: $(BUILD)/client-agent/wiremesh.o $(BUILD)/client-agent/localapi.o \
	$(BUILD)/client-agent/dns_cli.o $(BUILD)/client-agent/dns_msg.o $(COMMON_LIB)
BINARIES += $(BIN)/wiremeshd $(BIN)/wiremesh

# Time from `up` to first pong and to a direct path, 20 runs (root, namespaces).
bench-agent: $(BIN)/wiremeshd $(BIN)/wiremesh $(BIN)/wiremesh-server
	$(Q)WM_BIN=$(abspath $(BIN)) WM_TOP=$(CURDIR) tests/bench/agent/bench-agent.sh

.PHONY: bench-agent

# MagicDNS resolver against dnsmasq (root, namespaces): prints one bench-dns: line.
$(BUILD)/dnsload: $(BUILD)/tests/bench/dns/dnsload.o
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^
bench-dns: $(BIN)/wiremeshd $(BIN)/wiremesh $(BIN)/wiremesh-server $(BUILD)/dnsload
	$(Q)WM_BIN=$(abspath $(BIN)) WM_TOP=$(CURDIR) DNSLOAD=$(abspath $(BUILD)/dnsload) \
	  tests/bench/dns/bench-dns.sh

.PHONY: bench-dns
