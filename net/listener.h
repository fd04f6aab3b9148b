/*
 * listener.h - accepting TCP connections on a libevent loop, shared by the
 * request plane (net/rpc) and the HTTP server (net/http).
 *
 * A listener owns a listening socket (sock_listen) and its read event.
 * Each accepted connection, non-blocking and close-on-exec, is handed to
 * on_accept(fd, peer, arg) with its peer as "host:port" ("[v6]:port");
 * the callback owns fd from then on.
 *
 * Running out of descriptors (EMFILE, ENFILE) or socket memory must not
 * turn into a busy loop on a socket that stays readable: the listener
 * stops watching it for LISTENER_BACKOFF_MS, leaving new connections in
 * the kernel's backlog until descriptors are freed, and warns at most
 * once every 10 s with the count of pauses.
 *
 * Loop thread only.  Returns 0 or a negative errno with err_msg() set.
 */
#ifndef DYN_NET_LISTENER_H
#define DYN_NET_LISTENER_H

struct event_base;
struct listener;

#define LISTENER_BACKOFF_MS 100

typedef void (*listener_accept_fn)(int fd, const char *peer, void *arg);

/* Listen on host:port (port 0 = ephemeral); log_mod names the owner in
 * log lines ("http", "rpc"). */
int listener_open(struct event_base *base, const char *host, int port, int backlog,
		  const char *log_mod, listener_accept_fn on_accept, void *arg,
		  struct listener **out);
int listener_port(const struct listener *l);
/* Times accepting was paused for lack of descriptors or memory. */
unsigned long listener_pauses(const struct listener *l);
/* Close the socket; connections already accepted are not affected. */
void listener_free(struct listener *l);

#endif
