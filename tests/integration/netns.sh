# SPDX-License-Identifier: MIT
# The DESIGN.md test topology in network namespaces. Source it after lib.sh
# (it uses $T, WM_PIDS, WM_CLEANUP, fail); everything it makes is removed by
# lib.sh's EXIT trap, also on failure or Ctrl-C.
#
#   [node1]--(LAN)--[nat1]--+                  +--[nat2]--(LAN)--[node2]
#                           |---[ internet ]---|
#
# internet   namespace with a bridge "br0": 198.51.100.1/24 (the NATs' gateway)
#            and NETNS_INET_IPS (203.0.113.1..4/24) for servers and relays; it
#            does not forward, so a node can only reach the servers and the
#            other NATs' public addresses.
# node I     NAT namespace: "wan" 198.51.100.(10+I)/24 on the bridge, "lan"
#            192.0.2.(16I+1)/28; LAN namespace: "lan" 192.0.2.(16I+2)/28, default
#            route via the NAT. I is 1..14.
#            Kind "none": no NAT; the node's namespace has the "wan" address.
#            Each node namespace gets /etc/netns/NS/resolv.conf (no nameserver),
#            which `ip netns exec` shows as /etc/resolv.conf: an agent with
#            MagicDNS rewrites that file, never the host's (node_resolv_conf I).
#
# NAT kinds (nftables in the NAT namespace, table ip wmnat):
#   easy         masquerade: port-preserving, endpoint-independent mapping
#   hard         masquerade fully-random: a new port per destination (symmetric)
#   udp-blocked  easy, and UDP dropped in forward except DNS (port 53)
#   closed       udp-blocked, and TCP 443 dropped too
# Every NAT drops unsolicited packets to itself before conntrack confirms
# them, like a home router, so a peer's early punch does not leave an entry
# that would steal the node's port mapping.
#
# API
#   netns_setup                 make the internet namespace ($NS_INET)
#   netns_add_node I KIND       make node I behind a NAT of KIND
#   nat_set_kind I KIND         change a NAT's kind at runtime (easy/hard/udp-blocked/closed)
#   in_inet CMD...  in_nat I CMD...  in_node I CMD...   run in a namespace
#   bg_inet LOG CMD...  bg_node I LOG CMD...   background, tracked; sets BG_PID
#   node_ns I, nat_ns I, lan_ip I, wan_ip I, nat_kind I   names and addresses
#   mesh_ca NAME...             test CA + one certificate for NAMES (DNS or IP
#                               SANs) in $T/ca.pem, $T/cert.pem, $T/key.pem
#   mesh_start_derper LOG ARGS...   wiremesh-derper in the internet namespace
#                               with that certificate; waits for "ready"
command -v ip >/dev/null && command -v nft >/dev/null || skip "needs ip and nft"
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"

NETNS_SFX=${NETNS_SFX:-$$$(printf '%02x' $((RANDOM % 256)))}
NS_INET=wm${NETNS_SFX}i
NETNS_INET_IPS=(203.0.113.1 203.0.113.2 203.0.113.3 203.0.113.4)
NETNS_ALL=()
declare -A NETNS_KIND=()

netns_new() {	# NAME
	ip netns add "$1" || fail "ip netns add $1"
	NETNS_ALL+=("$1")
	ip -n "$1" link set lo up
}

netns_teardown() {
	local n p
	for n in "${NETNS_ALL[@]+"${NETNS_ALL[@]}"}"; do
		# stop what still runs inside (started by us: only our tests use these namespaces)
		for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$n" 2>/dev/null
	done
	NETNS_ALL=()
}
WM_CLEANUP+=(netns_teardown)

in_inet() { ip netns exec "$NS_INET" "$@"; }
node_ns() { echo "wm${NETNS_SFX}n$1"; }
nat_ns() { echo "wm${NETNS_SFX}r$1"; }
lan_ip() { echo "192.0.2.$((16 * $1 + 2))"; }
nat_lan_ip() { echo "192.0.2.$((16 * $1 + 1))"; }
wan_ip() { echo "198.51.100.$((10 + $1))"; }
nat_kind() { echo "${NETNS_KIND[$1]}"; }
in_node() { local i=$1; shift; ip netns exec "$(node_ns "$i")" "$@"; }
in_nat() { local i=$1; shift; ip netns exec "$(nat_ns "$i")" "$@"; }

# bg_in NS LOG CMD...: ip netns exec execs the command, so $! is its PID.
bg_in() {
	local ns=$1 log=$2; shift 2
	ip netns exec "$ns" "$@" >>"$log" 2>&1 &
	BG_PID=$!
	WM_PIDS+=("$BG_PID")
}
bg_inet() { bg_in "$NS_INET" "$@"; }
bg_node() { local i=$1; shift; bg_in "$(node_ns "$i")" "$@"; }

netns_setup() {
	local a
	netns_new "$NS_INET"
	in_inet sysctl -qw net.ipv4.ip_forward=0
	# A fixed address: a bridge without one takes its lowest port's, so a
	# node added later (netns_add_node) could change it under the running
	# nodes, whose ARP entries for the gateway and the servers then point
	# nowhere until they expire (agent_ha.sh's node 4 did, 1 run in 5).
	ip -n "$NS_INET" link add br0 address 02:77:6d:00:00:01 type bridge || fail "bridge"
	ip -n "$NS_INET" addr add 198.51.100.1/24 dev br0
	for a in "${NETNS_INET_IPS[@]}"; do ip -n "$NS_INET" addr add "$a/24" dev br0; done
	ip -n "$NS_INET" link set br0 up
}

# the kind-specific part of a NAT's ruleset, as nft commands
nat_rules() {	# KIND
	local masq=masquerade
	[ "$1" = hard ] && masq="masquerade fully-random"
	echo "add rule ip wmnat postrouting oifname \"wan\" $masq"
	case $1 in
	easy|hard) ;;
	udp-blocked|closed)
		echo 'add rule ip wmnat kind udp dport 53 accept'
		echo 'add rule ip wmnat kind udp sport 53 accept'
		echo 'add rule ip wmnat kind meta l4proto udp counter drop'
		if [ "$1" = closed ]; then
			echo 'add rule ip wmnat kind tcp dport 443 counter drop'
			echo 'add rule ip wmnat kind tcp sport 443 counter drop'
		fi ;;
	*) fail "unknown NAT kind $1" ;;
	esac
}

node_resolv_conf() { echo "/etc/netns/$(node_ns "$1")/resolv.conf"; }

netns_add_node() {	# I KIND
	local i=$1 kind=$2 n r
	[ "$i" -ge 1 ] && [ "$i" -le 14 ] || fail "node index $i out of 1..14"
	n=$(node_ns "$i") r=$(nat_ns "$i")
	netns_new "$n"
	mkdir -p "/etc/netns/$n" || fail "mkdir /etc/netns/$n"
	WM_CLEANUP+=("rm -rf /etc/netns/$n")
	printf '# wiremesh test namespace %s
' "$n" >"/etc/netns/$n/resolv.conf"
	if [ "$kind" = none ]; then
		ip link add wan netns "$n" type veth peer name "w$i" netns "$NS_INET" || fail "veth w$i"
		ip -n "$NS_INET" link set "w$i" master br0 up
		ip -n "$n" addr add "$(wan_ip "$i")/24" dev wan
		ip -n "$n" link set wan up
		ip -n "$n" route add default via 198.51.100.1
		NETNS_KIND[$i]=none
		return 0
	fi
	netns_new "$r"
	ip link add wan netns "$r" type veth peer name "w$i" netns "$NS_INET" || fail "veth w$i"
	ip -n "$NS_INET" link set "w$i" master br0 up
	ip -n "$r" addr add "$(wan_ip "$i")/24" dev wan
	ip -n "$r" link set wan up
	ip -n "$r" route add default via 198.51.100.1
	ip link add lan netns "$n" type veth peer name lan netns "$r" || fail "veth lan$i"
	ip -n "$r" addr add "$(nat_lan_ip "$i")/28" dev lan
	ip -n "$r" link set lan up
	ip -n "$n" addr add "$(lan_ip "$i")/28" dev lan
	ip -n "$n" link set lan up
	ip -n "$n" route add default via "$(nat_lan_ip "$i")"
	in_nat "$i" sysctl -qw net.ipv4.ip_forward=1
	{
		cat <<'NFT'
table ip wmnat {
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan" ct state established,related accept
		iifname "wan" icmp type echo-request accept
		iifname "wan" drop
	}
	chain kind {
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		jump kind
		ct state established,related accept
		iifname "lan" oifname "wan" accept
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
	}
}
NFT
		nat_rules "$kind"
	} | in_nat "$i" nft -f - || fail "nft rules for NAT $i ($kind)"
	NETNS_KIND[$i]=$kind
}

# nat_set_kind I KIND: atomically swaps the NAT's kind; established flows
# keep their mappings (as on a real router whose firewall rules change).
nat_set_kind() {
	local i=$1 kind=$2
	[ "${NETNS_KIND[$i]:-none}" != none ] || fail "node $i has no NAT"
	{
		echo 'flush chain ip wmnat kind'
		echo 'flush chain ip wmnat postrouting'
		nat_rules "$kind"
	} | in_nat "$i" nft -f - || fail "nft: NAT $i to $kind"
	NETNS_KIND[$i]=$kind
}

# mesh_ca NAME...: a test CA and one server certificate for all NAMES
mesh_ca() {
	local san="" n
	for n in "$@"; do
		if [[ $n =~ ^[0-9.]+$ ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
	done
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-keyout "$T/ca.key" -out "$T/ca.pem" -subj "/CN=wiremesh test CA" 2>/dev/null || fail "CA"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$T/key.pem" -out "$T/req.csr" -subj "/CN=$1" 2>/dev/null || fail "CSR"
	printf 'subjectAltName=%s\n' "${san#,}" >"$T/ext"
	openssl x509 -req -in "$T/req.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-days 1 -extfile "$T/ext" -out "$T/cert.pem" 2>/dev/null || fail "certificate"
	chmod 600 "$T/key.pem" "$T/ca.key"
}

# mesh_start_derper LOG ARGS...: sets BG_PID
mesh_start_derper() {
	local log=$1; shift
	bg_inet "$log" "$WM_BIN/wiremesh-derper" --http-port -1 --tls-cert "$T/cert.pem" \
		--tls-key "$T/key.pem" "$@"
	wait_for 10 grep -q 'msg="ready"' "$log" || { cat "$log"; fail "derper did not start"; }
}

# ---- a whole mesh: control server, relays, agents ----
#   mesh_start_control [serve args...]  wiremesh-server in the internet namespace
#       on https://203.0.113.1 (TLS, embedded relay "lon" region 1 on the same
#       listener, STUN 203.0.113.1:3478), SQLite in $T; needs mesh_ca first with
#       control.test and 203.0.113.1 among the names. $MESH_DERP_MAP (optional)
#       is passed as --derp-map (default: `mesh_derp_map 1`). Sets CONTROL_PID,
#       CONTROL_URL, WIREMESH_API_KEY.
#   mesh_derp_map N              prints a DERP map: region 1 "lon" (the control
#       server's relay, control.test at 203.0.113.1) and, for N=2, region 2 "fra"
#       (a wiremesh-derper, derp2.test at 203.0.113.2, started by the caller with
#       mesh_start_derper LOG --addr 203.0.113.2:443 --stun-addr 203.0.113.2:3478)
#   mesh_authkey USER            a reusable pre-auth key for USER (user made if needed)
#   mesh_start_agent I           wiremeshd in node I's namespace; sets AGENT_PID[I]
#   wm I ARGS...                 the wiremesh CLI against node I's agent
#   srv ARGS...                  the admin CLI against the control server
#   mesh_api METHOD PATH [BODY]  REST call with the admin key: "STATUS BODY"
CONTROL_IP=203.0.113.1
CONTROL_URL=https://$CONTROL_IP
declare -A AGENT_PID=()

srv() {
	in_inet env SSL_CERT_FILE="$T/ca.pem" WIREMESH_SERVER="$CONTROL_URL" \
		WIREMESH_API_KEY="$WIREMESH_API_KEY" "$WM_BIN/wiremesh-server" "$@"
}

mesh_derp_map() {
	local r2=""
	[ "$1" -ge 2 ] && r2=',
  "2": {"RegionID": 2, "RegionCode": "fra", "RegionName": "Frankfurt",
        "Nodes": [{"Name": "2a", "RegionID": 2, "HostName": "derp2.test", "IPv4": "203.0.113.2",
                   "DERPPort": 443, "STUNPort": 3478}]}'
	cat <<JSON
{"Regions": {
  "1": {"RegionID": 1, "RegionCode": "lon", "RegionName": "London",
        "Nodes": [{"Name": "1a", "RegionID": 1, "HostName": "control.test", "IPv4": "$CONTROL_IP",
                   "DERPPort": 443, "STUNPort": 3478}]}$r2
}}
JSON
}

mesh_start_control() {
	local args=()
	[ -n "${MESH_DERP_MAP:-}" ] || { MESH_DERP_MAP=$T/derpmap.json; mesh_derp_map 1 >"$MESH_DERP_MAP"; }
	args+=(--derp-map "$MESH_DERP_MAP")
	if [ -z "${WIREMESH_API_KEY:-}" ]; then
		WIREMESH_API_KEY=$("$WM_BIN/wiremesh-server" apikeys create --create --db "$T/control.sqlite" 2>"$T/apikey.err") ||
			{ cat "$T/apikey.err"; fail "apikeys create"; }
		export WIREMESH_API_KEY
	fi
	: >>"$T/control.log"
	WM_SERVER_LOG=$T/control.log
	bg_inet "$T/control.log" "$WM_BIN/wiremesh-server" serve --listen "$CONTROL_IP:443" \
		--db "$T/control.sqlite" --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" \
		--derp --derp-region-id 1 --derp-region-code lon --derp-region-name London \
		--derp-hostname control.test --stun-listen "$CONTROL_IP:3478" "${args[@]}" "$@"
	CONTROL_PID=$BG_PID
	wait_for 10 in_inet curl -sf --cacert "$T/ca.pem" "$CONTROL_URL/healthz" ||
		{ tail -n 20 "$T/control.log"; fail "control server did not become healthy"; }
}

mesh_stop_control() {
	kill -TERM "$CONTROL_PID" 2>/dev/null
	wait "$CONTROL_PID" 2>/dev/null || true
}

mesh_api() {
	local m=$1 p=$2
	if [ $# -ge 3 ]; then printf '%s' "$3" >"$T/req"; fi
	in_inet curl -s --cacert "$T/ca.pem" -o "$T/resp" -w '%{http_code}' -X "$m" \
		-H "Authorization: Bearer $WIREMESH_API_KEY" \
		${3+-H 'Content-Type: application/json' --data-binary "@$T/req"} "$CONTROL_URL$p"
	echo " $(cat "$T/resp")"
}

mesh_authkey() {
	srv users list 2>/dev/null | grep -qw "$1" || srv users create "$1" >/dev/null || fail "users create $1"
	srv preauthkeys create --user "$1" --reusable --expiration 1h || fail "preauthkeys create"
}

mesh_start_agent() {	# I [extra wiremeshd args]
	local i=$1; shift
	mkdir -p "$T/n$i"
	bg_node "$i" "$T/n$i/agent.log" env SSL_CERT_FILE="$T/ca.pem" "$WM_BIN/wiremeshd" \
		--state-dir "$T/n$i/state" --socket "$T/n$i/sock" --tun wm0 --port 41641 "$@"
	AGENT_PID[$i]=$BG_PID
	wait_for 10 test -S "$T/n$i/sock" || { cat "$T/n$i/agent.log"; fail "wiremeshd $i did not start"; }
}

wm() { local i=$1; shift; in_node "$i" "$WM_BIN/wiremesh" --socket "$T/n$i/sock" "$@"; }
