/*
 * sock.c - resolve and listen on TCP addresses (see sock.h).
 */
#include "net/sock.h"
#include "core/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
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

int sock_listen(const char *host, int port, int backlog, int *fd_out, int *bound_port)
{
	struct addrinfo *res, *ai;
	int fd = -1, e = 0, rc;

	if (port < 0 || port > 65535)
		return err_set(-EINVAL, "bad port %d", port);
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
