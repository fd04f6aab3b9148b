/*
 * sock.c - resolve, listen on, name and tune TCP sockets (see sock.h).
 */
#include "net/sock.h"
#include "core/err.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int sock_is_wildcard(const char *host)
{
	return !host || !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") ||
	       !strcmp(host, "[::]") || !strcmp(host, "*");
}

int sock_resolve(const char *host, int port, int passive, struct addrinfo **res)
{
	struct addrinfo hints = { 0 };
	char serv[16];

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	snprintf(serv, sizeof(serv), "%d", port);
	int rc = getaddrinfo(sock_is_wildcard(host) && passive ? NULL : host, serv,
			     &hints, res);
	if (rc)
		return err_set(-EHOSTUNREACH, "cannot resolve '%s': %s", host ? host : "",
			       gai_strerror(rc));
	return 0;
}

/* A listening socket on the wildcard address of family: IPv6 ones take
 * IPv4 connections too (dual stack).  -errno on failure. */
static int listen_any(int family, int port, int backlog)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int one = 1, zero = 0;

	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_any;
		a->sin6_port = htons((uint16_t)port);
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_ANY);
		a->sin_port = htons((uint16_t)port);
		len = sizeof(*a);
	}
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int sock_listen(const char *host, int port, int backlog, int *fd_out, int *bound_port)
{
	struct addrinfo *res, *ai;
	int fd = -1, e = 0, rc;

	if (port < 0 || port > 65535)
		return err_set(-EINVAL, "bad port %d", port);
	if (sock_is_wildcard(host)) {
		/* 0.0.0.0 is IPv4 only; "::" and an unnamed host take both
		 * families (an unnamed host falls back to IPv4 where IPv6 is off). */
		int v4 = host && !strcmp(host, "0.0.0.0");
		int v6 = host && (!strcmp(host, "::") || !strcmp(host, "[::]"));
		fd = listen_any(v4 ? AF_INET : AF_INET6, port, backlog);
		if (fd < 0 && !v4 && !v6)
			fd = listen_any(AF_INET, port, backlog);
		if (fd < 0)
			e = -fd;
	} else {
		if ((rc = sock_resolve(host, port, 1, &res)) < 0)
			return rc;
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				    ai->ai_protocol);
			if (fd < 0) {
				e = errno;
				continue;
			}
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
				break;
			e = errno;
			close(fd);
			fd = -1;
		}
		freeaddrinfo(res);
	}
	if (fd < 0)
		return err_set(-e, "listen on %s:%d: %s", host && *host ? host : "*", port,
			       strerror(e));

	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						     : ((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
}

int sock_split_address(const char *address, char *host, size_t hsize, int *port)
{
	const char *colon = strrchr(address, ':');
	const char *h = address;
	size_t hlen;
	long p;

	if (!colon || colon == address)
		return err_set(-EINVAL, "bad address '%s' (expected HOST:PORT)", address);
	hlen = (size_t)(colon - address);
	if (h[0] == '[') {
		if (hlen < 3 || h[hlen - 1] != ']')
			return err_set(-EINVAL, "bad address '%s' (expected [V6]:PORT)", address);
		h++;
		hlen -= 2;
	}
	if (hlen >= hsize)
		return err_set(-EINVAL, "bad address '%s' (host too long)", address);
	if (parse_long(colon + 1, &p, "port") < 0 || p < 1 || p > 65535)
		return err_set(-EINVAL, "bad address '%s' (port must be 1-65535)", address);
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (int)p;
	return 0;
}

void sock_advertise(char *out, size_t size, const char *host, int port)
{
	char name[256];
	const char *adv = host;
	if (sock_is_wildcard(host)) {
		if (gethostname(name, sizeof(name)) < 0)
			snprintf(name, sizeof(name), "localhost");
		name[sizeof(name) - 1] = '\0';
		adv = name;
	}
	snprintf(out, size, strchr(adv, ':') ? "[%s]:%d" : "%s:%d", adv, port);
}

void sock_tune(int fd)
{
	int one = 1, idle = 30, intvl = 10, cnt = 3;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}
