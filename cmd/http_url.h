/*
 * http_url.h - the http:// URL a user can try for a listening address.
 *
 * A server listening on a wildcard address is reached on 127.0.0.1: the
 * socket layer binds a wildcard to the first passive address the resolver
 * gives, IPv4's 0.0.0.0 or a dual-stack ::, and both accept IPv4 loopback
 * connections.  An IPv6 literal goes in brackets, as URLs require
 * (RFC 3986), so "http://HOST:PORT" parses and curl accepts it.  Pure
 * string work: no I/O, any thread.
 */
#ifndef DYN_CMD_HTTP_URL_H
#define DYN_CMD_HTTP_URL_H

#include <stddef.h>

/* Writes "http://HOST:PORT" for a server listening on host:port into
 * buf[n] (truncated to fit) and returns buf. */
char *http_url_for(char *buf, size_t n, const char *host, int port);

#endif
