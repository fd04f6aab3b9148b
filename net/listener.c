/*
 * listener.c - accepting TCP connections, with a pause instead of a busy
 * loop when descriptors run out.  See listener.h.
 */
#include "net/listener.h"
#include "net/sock.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 64			/* connections taken per wake-up */
#define WARN_EVERY_NS 10000000000ull	/* 10 s between "paused" warnings */

struct listener {
	int fd, port;
	struct event *ev;		/* readable listening socket */
	struct event *resume;		/* end of a pause */
	const char *log_mod;
	listener_accept_fn on_accept;
	void *arg;
	unsigned long pauses, pauses_unreported;
	uint64_t last_warn_ns;
};

static void format_peer(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(buf, size, "?");
		return;
	}
	snprintf(buf, size, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, serv);
}

/* Out of descriptors or memory: the socket stays readable, so stop
 * watching it for a while rather than spin. */
static void pause_accepting(struct listener *l, int err)
{
	struct timeval tv = { 0, LISTENER_BACKOFF_MS * 1000 };
	uint64_t now = mono_ns();

	event_del(l->ev);
	evtimer_add(l->resume, &tv);
	l->pauses++;
	l->pauses_unreported++;
	if (!l->last_warn_ns || now - l->last_warn_ns >= WARN_EVERY_NS) {
		LOG_WARN(l->log_mod, "accept: %s; not accepting for %d ms (%lu pause(s) since "
			 "the last warning); raise 'ulimit -n' or lower the load", strerror(err),
			 LISTENER_BACKOFF_MS, l->pauses_unreported);
		l->last_warn_ns = now;
		l->pauses_unreported = 0;
	}
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	(void)fd;
	(void)what;
	event_add(l->ev, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *l = arg;
	(void)what;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				pause_accepting(l, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				LOG_WARN(l->log_mod, "accept: %s", strerror(errno));
			return;
		}
		char peer[NI_MAXHOST + NI_MAXSERV + 4];
		format_peer((struct sockaddr *)&ss, len, peer, sizeof(peer));
		l->on_accept(fd, peer, l->arg);
	}
}

int listener_open(struct event_base *base, const char *host, int port, int backlog,
		  const char *log_mod, listener_accept_fn on_accept, void *arg,
		  struct listener **out)
{
	int fd, bound, rc = sock_listen(host, port, backlog, &fd, &bound);
	if (rc < 0)
		return rc;
	struct listener *l = xcalloc(1, sizeof(*l));
	l->fd = fd;
	l->port = bound;
	l->log_mod = log_mod;
	l->on_accept = on_accept;
	l->arg = arg;
	l->ev = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, l);
	l->resume = evtimer_new(base, resume_cb, l);
	event_add(l->ev, NULL);
	*out = l;
	return 0;
}

int listener_port(const struct listener *l)
{
	return l->port;
}

unsigned long listener_pauses(const struct listener *l)
{
	return l->pauses;
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	event_free(l->ev);
	event_free(l->resume);
	close(l->fd);
	free(l);
}
