/*
 * sock.h - TCP socket set-up shared by the request plane (net/rpc), the
 * HTTP server (net/http) and the KV data plane (net/kv_xfer).
 *
 * Returns 0 or a negative errno with err_msg() set.  Thread-safe.
 */
#ifndef DYN_NET_SOCK_H
#define DYN_NET_SOCK_H

#include <stddef.h>

struct addrinfo;

/* NULL, "", "*", "0.0.0.0", "::" and "[::]" mean every local address. */
int sock_is_wildcard(const char *host);

/* getaddrinfo for TCP host:port; passive resolves a wildcard host to the
 * any-address.  Free *res with freeaddrinfo(). */
int sock_resolve(const char *host, int port, int passive, struct addrinfo **res);

/* A non-blocking, close-on-exec listening socket on host:port (port 0 =
 * ephemeral) with SO_REUSEADDR; *bound_port is the port it got.  Wildcard
 * hosts: "0.0.0.0" listens on IPv4 only; "::", "[::]", "*", "" and NULL on
 * IPv6 and IPv4 alike (one dual-stack socket; NULL, "" and "*" fall back to
 * IPv4 where IPv6 is disabled). */
int sock_listen(const char *host, int port, int backlog, int *fd, int *bound_port);

/* Split "HOST:PORT" / "[V6]:PORT" into host (hsize bytes at most) and port. */
int sock_split_address(const char *address, char *host, size_t hsize, int *port);

/* "HOST:PORT" ("[V6]:PORT") for others to reach a socket listening on
 * host:port; a wildcard host is advertised as this machine's name. */
void sock_advertise(char *out, size_t size, const char *host, int port);

/* Options for a connected TCP stream: no Nagle delay, keepalive probes
 * (a dead peer is found in about a minute). */
void sock_tune(int fd);

#endif
