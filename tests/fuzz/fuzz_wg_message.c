// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: arbitrary datagrams into a WireGuard device through
 * wg_device_input (client-agent/wg/device.h). Two devices, A (the target) and
 * B (its one peer), are made once per process and wired together through the
 * output hooks, so nothing goes to the network (cookie replies, which the
 * engine sends on its own socket, go to 127.0.0.1:9) and no threads are made
 * per input. Before the first input B completes a handshake with A.
 *
 * The first input byte picks how the rest reaches A:
 *   0 (and anything else): as it is;
 *   1: with a correct mac1 for A's key when it is handshake-sized, so the
 *      Noise code behind the mac1 check is reached;
 *   2: as a plaintext IP packet that B encrypts on the live session, so A's
 *      checks of decrypted packets (IP header, allowed IPs) are fuzzed.
 * After each input the hooks' queues are drained between the two devices.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client-agent/wg/cookie.h"
#include "client-agent/wg/crypto.h"
#include "client-agent/wg/device.h"
#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { QMAX = 64 };

struct dgram { uint8_t *p; size_t n; };

struct queue {
	pthread_mutex_t mu;
	struct dgram d[QMAX];
	size_t n;
};

static struct wg_device *A, *B;
static uint8_t a_pub[WG_KEY_LEN], b_pub[WG_KEY_LEN];
static struct queue qa = { .mu = PTHREAD_MUTEX_INITIALIZER };	/* sent by A */
static struct queue qb = { .mu = PTHREAD_MUTEX_INITIALIZER };	/* sent by B */
static struct endpoint a_ep, b_ep, junk_ep;
static volatile size_t delivered_a;

static int
on_send(void *arg, const uint8_t peer[static WG_KEY_LEN], const struct endpoint *ep,
	const uint8_t *pkt, size_t len)
{
	struct queue *q = arg;
	uint8_t *copy;

	(void)peer;
	(void)ep;
	pthread_mutex_lock(&q->mu);
	if (q->n < QMAX && (copy = malloc(len ? len : 1)) != NULL) {
		memcpy(copy, pkt, len);
		q->d[q->n].p = copy;
		q->d[q->n].n = len;
		q->n++;
	}
	pthread_mutex_unlock(&q->mu);
	return 0;		/* taken: never the engine's socket */
}

static void
on_deliver_a(void *arg, const uint8_t *pkt, size_t len)
{
	(void)arg;
	if (len == 0 || pkt == NULL)
		__builtin_trap();	/* A must not deliver empty packets */
	delivered_a++;
}

static void
on_deliver_b(void *arg, const uint8_t *pkt, size_t len)
{
	(void)arg;
	(void)pkt;
	(void)len;
}

static void
on_other(void *arg, const struct endpoint *from, const uint8_t *pkt, size_t len)
{
	(void)arg;
	(void)from;
	(void)pkt;
	(void)len;
}

/* Moves what one device sent into the other; returns how many moved. */
static size_t
pump_one(struct queue *q, struct wg_device *to, const struct endpoint *from)
{
	struct dgram d[QMAX];
	size_t n, i;

	pthread_mutex_lock(&q->mu);
	n = q->n;
	memcpy(d, q->d, n * sizeof(d[0]));
	q->n = 0;
	pthread_mutex_unlock(&q->mu);
	for (i = 0; i < n; i++) {
		wg_device_input(to, from, d[i].p, d[i].n);
		free(d[i].p);
	}
	return n;
}

static void
pump(void)
{
	int rounds;

	for (rounds = 0; rounds < 8; rounds++)
		if (pump_one(&qb, A, &b_ep) + pump_one(&qa, B, &a_ep) == 0)
			break;
}

static void
make_device(struct wg_device **d, uint8_t seed, struct queue *q,
	    void (*deliver)(void *, const uint8_t *, size_t), uint8_t pub[static WG_KEY_LEN])
{
	struct wg_output_ops ops = { .send = on_send, .deliver = deliver, .recv_other = on_other,
				     .arg = q };
	uint8_t priv[WG_KEY_LEN];

	memset(priv, seed, sizeof(priv));
	if (wg_device_new(-1, 1420, 0, d) != 0)
		abort();
	wg_device_set_output(*d, &ops);
	if (wg_device_set_private_key(*d, priv) != 0)
		abort();
	wg_pubkey(pub, priv);
}

static void
add_peer(struct wg_device *d, const uint8_t pub[static WG_KEY_LEN], const struct endpoint *ep,
	 const char *const *aips, size_t naips)
{
	struct ip_prefix p[4];
	struct wg_peer_config c;
	size_t i;

	memset(&c, 0, sizeof(c));
	memcpy(c.public_key, pub, WG_KEY_LEN);
	for (i = 0; i < naips; i++)
		if (prefix_parse(aips[i], false, &p[i]) != 0)
			abort();
	c.allowed_ips = p;
	c.n_allowed_ips = naips;
	c.endpoint = *ep;
	c.flags = WG_PEER_HAS_ENDPOINT;
	if (wg_device_peer_set(d, &c) != 0)
		abort();
}

static void
init(void)
{
	static const char *const a_allows[] = { "10.0.0.2/32", "fd00::2/128" };
	static const char *const b_allows[] = { "0.0.0.0/0", "::/0" };
	static const uint8_t hello[28] = { 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0,
					   10, 0, 0, 2, 10, 0, 0, 1, 0, 9, 0, 9, 0, 8, 0, 0 };
	int i;

	if (endpoint_parse("127.0.0.1:9", &a_ep) != 0 || endpoint_parse("127.0.0.1:9", &b_ep) != 0 ||
	    endpoint_parse("127.0.0.1:9", &junk_ep) != 0)
		abort();
	make_device(&A, 0x0a, &qa, on_deliver_a, a_pub);
	make_device(&B, 0x0b, &qb, on_deliver_b, b_pub);
	add_peer(A, b_pub, &b_ep, a_allows, 2);
	add_peer(B, a_pub, &a_ep, b_allows, 2);
	/* B -> A: handshake, then the staged packet. */
	wg_device_send_packet(B, hello, sizeof(hello));
	for (i = 0; i < 500 && delivered_a == 0; i++) {
		pump();
		usleep(2000);
	}
	if (delivered_a == 0)
		abort();	/* the harness is broken, not the code under test */
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	uint8_t buf[WG_INITIATION_LEN];

	if (!ready) {
		init();
		ready = true;
	}
	if (size == 0)
		return 0;
	switch (data[0]) {
	case 1:
		if (size - 1 == WG_INITIATION_LEN || size - 1 == WG_RESPONSE_LEN) {
			struct wg_cookie_maker m;

			memcpy(buf, data + 1, size - 1);
			wg_cookie_maker_init(&m, a_pub);
			wg_cookie_add_macs(&m, buf, size - 1, time_mono_ns());
			wg_device_input(A, &junk_ep, buf, size - 1);
			break;
		}
		wg_device_input(A, &junk_ep, data + 1, size - 1);
		break;
	case 2:
		wg_device_send_packet(B, data + 1, size - 1);
		break;
	default:
		wg_device_input(A, &junk_ep, data + 1, size - 1);
		break;
	}
	pump();
	return 0;
}
