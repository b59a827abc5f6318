/* SPDX-License-Identifier: MIT */
/*
 * Socket helpers shared by the relay's listeners and the agent-side clients:
 * "HOST:PORT" listen addresses (":443" meaning every address), non-blocking
 * TCP/UDP sockets, and the RLIMIT_NOFILE raise the relay needs to hold many
 * connections.
 */
#ifndef WM_RELAY_NET_H
#define WM_RELAY_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/addr.h"
#include "common/err.h"

/*
 * Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (all addresses; dual-stack
 * [::] when IPv6 exists, else 0.0.0.0). Fills *ss and *len.
 */
int relay_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len) WM_MUST_CHECK;

/* Bound, listening, non-blocking TCP socket (SO_REUSEADDR). Returns fd or ERR_IO. */
int relay_tcp_listen(const char *addr, int backlog) WM_MUST_CHECK;
/* Bound non-blocking UDP socket. Returns fd or ERR_IO/ERR_INVALID. */
int relay_udp_bind(const char *addr) WM_MUST_CHECK;
/* Local port of a bound socket, 0 on error. */
uint16_t relay_local_port(int fd);
int relay_set_nonblock(int fd) WM_MUST_CHECK;
/* Turns v4-mapped IPv6 endpoints into plain IPv4 ones. */
void relay_endpoint_unmap(struct endpoint *e);
/* Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit. */
long relay_raise_nofile(void);

#endif
