/*
 * sock.h - TCP socket set-up shared by the request plane (net/rpc) and
 * the HTTP server (net/http).
 *
 * Returns 0 or a negative errno with err_msg() set.  Thread-safe.
 */
#ifndef DYN_NET_SOCK_H
#define DYN_NET_SOCK_H

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

#endif
