/* SPDX-License-Identifier: MIT */
/* STUN binding client: transactions and a blocking query with retransmits. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay/stun_client.h"
#include "common/util.h"
#include "relay/relay_net.h"

size_t stun_txn_start(struct stun_txn *t, uint8_t out[static STUN_BINDING_REQUEST_LEN])
{
	random_bytes(t->txid, sizeof(t->txid));
	t->sent_us = time_mono_ns() / 1000;
	return stun_build_request(out, t->txid);
}

int stun_txn_match(const struct stun_txn *t, const uint8_t *pkt, size_t n,
		   struct endpoint *mapped, int64_t *rtt_us)
{
	struct stun_msg m;
	struct endpoint e;

	if (stun_parse(pkt, n, &m) != 0 || !m.rfc5389 ||
	    memcmp(m.txid + 4, t->txid, STUN_TXID_LEN) != 0)
		return ERR_NOT_FOUND;
	if (m.type != STUN_BINDING_SUCCESS || (m.has_fingerprint && !m.fingerprint_ok) ||
	    stun_response_addr(&m, &e) != 0)
		return ERR_INVALID;
	*mapped = e;
	if (rtt_us)
		*rtt_us = time_mono_ns() / 1000 - t->sent_us;
	return 0;
}

int stun_client_query(int fd, const struct endpoint *server, int timeout_ms,
		      struct endpoint *mapped, int64_t *rtt_us)
{
	static const int retrans_ms[] = { 0, 250, 750, 1750, 3750 };
	uint8_t req[STUN_BINDING_REQUEST_LEN], in[STUN_MAX_MSG];
	struct sockaddr_storage ss;
	socklen_t sl;
	struct stun_txn t;
	int64_t start = time_mono_ms();
	size_t len, next = 0;
	bool own = fd < 0;
	int r = ERR_TIMEOUT;

	sl = endpoint_to_sockaddr(server, &ss);
	if (own) {
		fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return ERR_IO;
	}
	len = stun_txn_start(&t, req);
	for (;;) {
		int64_t now = time_mono_ms(), wait;
		struct pollfd pf = { .fd = fd, .events = POLLIN };

		if (now - start >= timeout_ms)
			break;
		if (next < ARRAY_SIZE(retrans_ms) && now - start >= retrans_ms[next]) {
			if (sendto(fd, req, len, 0, (struct sockaddr *)&ss, sl) < 0 &&
			    errno != EAGAIN) {
				r = ERR_IO;
				break;
			}
			if (next == 0)
				t.sent_us = time_mono_ns() / 1000;
			next++;
		}
		wait = timeout_ms - (now - start);
		if (next < ARRAY_SIZE(retrans_ms) && retrans_ms[next] - (now - start) < wait)
			wait = retrans_ms[next] - (now - start);
		if (wait < 0)
			wait = 0;
		if (poll(&pf, 1, (int)wait) <= 0)
			continue;
		for (;;) {
			ssize_t n = recv(fd, in, sizeof(in), MSG_DONTWAIT);

			if (n < 0)
				break;
			if (stun_txn_match(&t, in, (size_t)n, mapped, rtt_us) == 0) {
				relay_endpoint_unmap(mapped);
				r = 0;
				goto out;
			}
		}
	}
out:
	if (own)
		close(fd);
	return r;
}
