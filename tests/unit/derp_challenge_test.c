// SPDX-License-Identifier: MIT
/* The DERP server challenge (issue 11): a ClientInfo is bound to the
 * ServerKey of its own connection, so one recorded on a plain (proxied)
 * connection and replayed on another is refused, as is one without it. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <sodium.h>

#include "relay/derp_frame.h"
#include "relay/derp_server.h"

static int
dial(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { 5, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static int
read_full(int fd, uint8_t *p, size_t n)
{
	size_t off = 0;

	while (off < n) {
		ssize_t r = read(fd, p + off, n - off);

		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

/* Upgrades, reads the ServerKey frame; fills the challenge. */
static int
upgrade(uint16_t port, uint8_t challenge[DERP_CHALLENGE_LEN], uint8_t spub[KEY_LEN])
{
	static const char req[] = "GET /derp HTTP/1.1\r\nHost: derp.test\r\nUpgrade: DERP\r\n"
	    "Connection: Upgrade\r\n\r\n";
	int fd = dial(port);
	uint8_t c, hdr[DERP_HEADER_LEN], payload[256];
	char head[1024];
	size_t hl = 0;
	uint32_t len;
	uint8_t type;

	ck_assert_int_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	while (hl < sizeof(head) - 1 && read(fd, &c, 1) == 1) {
		head[hl++] = (char)c;
		if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	head[hl] = 0;
	ck_assert_msg(strncmp(head, "HTTP/1.1 101", 12) == 0, "no upgrade: %s", head);
	ck_assert_int_eq(read_full(fd, hdr, sizeof(hdr)), 0);
	ck_assert_int_eq(derp_frame_get_header(hdr, &type, &len, 65536), 0);
	ck_assert_int_eq(type, DERP_FRAME_SERVER_KEY);
	ck_assert_uint_le(len, sizeof(payload));
	ck_assert_int_eq(read_full(fd, payload, len), 0);
	ck_assert_int_eq(derp_server_key_parse(payload, len, spub, challenge), 0);
	return fd;
}

/* Sends a ClientInfo frame; true when a ServerInfo frame comes back. */
static bool
admitted(int fd, const uint8_t *info, size_t n)
{
	uint8_t hdr[DERP_HEADER_LEN];
	uint32_t len;
	uint8_t type;

	derp_frame_put_header(hdr, DERP_FRAME_CLIENT_INFO, (uint32_t)n);
	ck_assert_int_eq(write(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	ck_assert_int_eq(write(fd, info, n), (ssize_t)n);
	if (read_full(fd, hdr, sizeof(hdr)) != 0 || derp_frame_get_header(hdr, &type, &len, 65536) != 0)
		return false;
	return type == DERP_FRAME_SERVER_INFO;
}

START_TEST(test_challenge)
{
	struct derp_server_config cfg;
	struct derp_server *s;
	uint8_t ch1[DERP_CHALLENGE_LEN], ch2[DERP_CHALLENGE_LEN], spub[KEY_LEN];
	uint8_t cpriv[KEY_LEN], cpub[KEY_LEN], info[DERP_MAX_CLIENT_INFO];
	int fd1, fd2, fd3, n;

	ck_assert_int_ge(sodium_init(), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.https_addr = "127.0.0.1:0";
	cfg.plain_derp = true;
	ck_assert_ptr_nonnull(s = derp_server_new(&cfg));
	ck_assert_int_eq(derp_server_start(s), 0);
	crypto_box_keypair(cpub, cpriv);

	fd1 = upgrade(derp_server_https_port(s), ch1, spub);
	n = derp_client_info_seal(info, sizeof(info), cpriv, cpub, spub, ch1);
	ck_assert_int_gt(n, 0);
	ck_assert_msg(admitted(fd1, info, (size_t)n), "the ClientInfo with its challenge");
	/* the same bytes on another connection: another challenge */
	fd2 = upgrade(derp_server_https_port(s), ch2, spub);
	ck_assert_int_ne(memcmp(ch1, ch2, DERP_CHALLENGE_LEN), 0);
	ck_assert_msg(!admitted(fd2, info, (size_t)n), "a replayed ClientInfo was admitted");
	/* none at all */
	fd3 = upgrade(derp_server_https_port(s), ch2, spub);
	n = derp_client_info_seal(info, sizeof(info), cpriv, cpub, spub, NULL);
	ck_assert_msg(!admitted(fd3, info, (size_t)n), "a ClientInfo without challenge was admitted");
	close(fd1);
	close(fd2);
	close(fd3);
	derp_server_free(s);
}
END_TEST

Suite *
derp_challenge_suite(void)
{
	Suite *s = suite_create("derp_challenge");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_challenge);
	suite_add_tcase(s, tc);
	return s;
}
