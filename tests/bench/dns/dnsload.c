// SPDX-License-Identifier: MIT
/*
 * dnsload: a DNS load generator for `make bench-dns`. Sends DURATION
 * seconds of UDP queries for NAME (type A) to SERVER:53, keeping WINDOW
 * queries outstanding, and prints
 *   qps=N p50_us=N p99_us=N sent=N answered=N lost=N
 * A query unanswered after 1 s counts as lost and is replaced.
 *
 *   dnsload SERVER NAME [DURATION_S] [WINDOW]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAXW = 1024, MAXLAT = 1 << 22 };

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static size_t
encode(uint8_t *b, uint16_t id, const char *name)
{
	size_t n = 12;
	const char *s = name;

	memset(b, 0, 12);
	b[0] = (uint8_t)(id >> 8);
	b[1] = (uint8_t)id;
	b[2] = 0x01;
	b[5] = 1;
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);

		b[n++] = (uint8_t)l;
		memcpy(b + n, s, l);
		n += l;
		s += l + (dot ? 1 : 0);
	}
	b[n++] = 0;
	b[n++] = 0;
	b[n++] = 1;
	b[n++] = 0;
	b[n++] = 1;
	return n;
}

int
main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, window, dur;
	int64_t sent_at[MAXW], start, end;
	uint16_t gen[MAXW];
	uint32_t *lat = malloc(MAXLAT * sizeof(*lat));
	size_t nlat = 0;
	uint64_t sent = 0, answered = 0, lost = 0;
	uint8_t q[300], r[1500];

	if (argc < 3 || lat == NULL) {
		fprintf(stderr, "usage: dnsload SERVER NAME [DURATION_S] [WINDOW]\n");
		return 2;
	}
	dur = argc > 3 ? atoi(argv[3]) : 5;
	window = argc > 4 ? atoi(argv[4]) : 32;
	if (window < 1 || window > MAXW || dur < 1 || strlen(argv[2]) > 200)
		return 2;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, argv[1], &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(53);
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, argv[1], &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(53);
		sl = sizeof(struct sockaddr_in6);
	} else {
		fprintf(stderr, "dnsload: bad address %s\n", argv[1]);
		return 2;
	}
	if ((fd = socket(ss.ss_family, SOCK_DGRAM, 0)) < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		perror("dnsload");
		return 1;
	}
	start = now_ns();
	end = start + (int64_t)dur * 1000000000;
	/* slot i uses ids i + MAXW * gen[i]: a late answer to a replaced query is ignored */
	for (int i = 0; i < window; i++) {
		gen[i] = 0;
		sent_at[i] = now_ns();
		if (send(fd, q, encode(q, (uint16_t)i, argv[2]), 0) > 0)
			sent++;
	}
	while (now_ns() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t t;

		if (poll(&p, 1, 100) == 1) {
			ssize_t n;

			while ((n = recv(fd, r, sizeof(r), MSG_DONTWAIT)) >= 12) {
				unsigned id = (unsigned)(r[0] << 8 | r[1]), slot = id % MAXW;

				if ((int)slot >= window || id / MAXW != gen[slot] % (65536 / MAXW))
					continue;
				t = now_ns();
				if (nlat < MAXLAT)
					lat[nlat++] = (uint32_t)((t - sent_at[slot]) / 1000);
				answered++;
				gen[slot]++;
				sent_at[slot] = t;
				if (send(fd, q, encode(q, (uint16_t)(slot + MAXW * (gen[slot] % (65536 / MAXW))),
				    argv[2]), 0) > 0)
					sent++;
			}
		}
		t = now_ns();
		for (int i = 0; i < window; i++)
			if (t - sent_at[i] > 1000000000) {
				lost++;
				gen[i]++;
				sent_at[i] = t;
				if (send(fd, q, encode(q, (uint16_t)(i + MAXW * (gen[i] % (65536 / MAXW))),
				    argv[2]), 0) > 0)
					sent++;
			}
	}
	qsort(lat, nlat, sizeof(*lat), cmp_u32);
	printf("qps=%.0f p50_us=%u p99_us=%u sent=%llu answered=%llu lost=%llu\n",
	    (double)answered / ((double)(now_ns() - start) / 1e9),
	    nlat ? lat[nlat / 2] : 0, nlat ? lat[nlat * 99 / 100] : 0, (unsigned long long)sent,
	    (unsigned long long)answered, (unsigned long long)lost);
	free(lat);
	close(fd);
	return answered > 0 ? 0 : 1;
}
