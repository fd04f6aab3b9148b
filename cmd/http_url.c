/*
 * http_url.c - the http:// URL to try for a listening address (see
 * http_url.h).
 */
#include "cmd/http_url.h"
#include "net/sock.h"

#include <stdio.h>
#include <string.h>

char *http_url_for(char *buf, size_t n, const char *host, int port)
{
	if (sock_is_wildcard(host))
		host = "127.0.0.1";
	const char *zone = strchr(host, ':') ? strchr(host, '%') : NULL;
	if (zone)	/* "fe80::1%eth0": the '%' is written %25 inside a URL */
		snprintf(buf, n, "http://[%.*s%%25%s]:%d", (int)(zone - host), host, zone + 1,
			 port);
	else if (strchr(host, ':'))	/* only IPv6 literals contain ':' */
		snprintf(buf, n, "http://[%s]:%d", host, port);
	else
		snprintf(buf, n, "http://%s:%d", host, port);
	return buf;
}
