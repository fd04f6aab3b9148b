/*
 * http_client.c - libcurl multi on a libevent loop (see http_client.h).
 *
 * libcurl tells us which sockets to watch (socket callback) and when to
 * wake it (timer callback); we tell it which socket became ready with
 * curl_multi_socket_action() and then collect finished transfers with
 * curl_multi_info_read().
 *
 * One timestamp per loop turn: a socket's readiness is not handed to
 * libcurl in its own callback but queued, and the first socket of a turn
 * reads the clock and activates the flush event.  libevent appends an
 * event activated during a turn after those already active, so the flush
 * runs once every socket the poll reported has been queued, and hands all
 * of them to libcurl with that one timestamp.
 */
#include "net/http_client.h"
#include "core/err.h"
#include "core/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct httpc {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	long active;
	uint64_t now_ns;	/* arrival time of the socket being processed */
	int in_action;
	struct event *flush;	/* runs the queued socket events of a turn */
	struct ready *ready;	/* sockets reported ready this turn */
	size_t nready, cap_ready;
	uint64_t turn_ns;	/* mono_ns() at the turn's first ready socket */
	struct xfer *xfers;	/* doubly linked list of live transfers */
	struct sockw *socks;	/* doubly linked list of socket watchers */
};

struct xfer {
	struct httpc *hc;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	struct httpc_req req;	/* callbacks and arg only */
	int aborted;
	char errbuf[CURL_ERROR_SIZE];
	struct xfer *prev, *next;
};

/* A socket libevent reported ready, waiting for the turn's flush. */
struct ready {
	curl_socket_t fd;
	int flags;		/* CURL_CSELECT_* */
};

/* Per-socket watcher, attached to the socket with curl_multi_assign(). */
struct sockw {
	struct httpc *hc;
	struct event *ev;
	curl_socket_t fd;
	struct sockw *prev, *next;
};

static void sockw_free(struct httpc *hc, struct sockw *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		hc->socks = w->next;
	if (w->next)
		w->next->prev = w->prev;
	event_free(w->ev);
	free(w);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *httpc_result_name(enum httpc_result r)
{
	switch (r) {
	case HTTPC_OK: return "ok";
	case HTTPC_CONNECT: return "connect";
	case HTTPC_DISCONNECT: return "disconnect";
	case HTTPC_TIMEOUT: return "timeout";
	case HTTPC_ABORTED: return "aborted";
	case HTTPC_OTHER: return "other";
	}
	return "other";
}

static enum httpc_result classify(CURLcode c)
{
	switch (c) {
	case CURLE_OK: return HTTPC_OK;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		return HTTPC_CONNECT;
	case CURLE_OPERATION_TIMEDOUT: return HTTPC_TIMEOUT;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2_STREAM:
		return HTTPC_DISCONNECT;
	case CURLE_WRITE_ERROR:
	case CURLE_ABORTED_BY_CALLBACK:
		return HTTPC_ABORTED;
	default: return HTTPC_OTHER;
	}
}

static void check_done(struct httpc *hc)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(hc->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct xfer *x = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		CURLcode code = m->data.result;
		struct httpc_done d = { classify(code), 0, mono_ns(), "" };
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &d.status);
		if (x->aborted)
			d.result = HTTPC_ABORTED;
		if (code != CURLE_OK)
			d.msg = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
		curl_multi_remove_handle(hc->multi, x->easy);
		if (x->prev)
			x->prev->next = x->next;
		else
			hc->xfers = x->next;
		if (x->next)
			x->next->prev = x->prev;
		hc->active--;
		/* The message may point into x->errbuf: call before freeing. */
		x->req.on_done(x->req.arg, &d);
		curl_easy_cleanup(x->easy);
		curl_slist_free_all(x->headers);
		free(x->body);
		free(x);
	}
}

/* Hand every socket queued this turn to libcurl, all stamped with the
 * turn's time.  A socket that libcurl closed meanwhile (or whose number
 * a new connection reused) only gets a spurious readiness check. */
static void flush_ready(struct httpc *hc)
{
	int running;

	if (!hc->nready)
		return;
	hc->now_ns = hc->turn_ns;
	hc->in_action = 1;
	for (size_t i = 0; i < hc->nready; i++)
		curl_multi_socket_action(hc->multi, hc->ready[i].fd, hc->ready[i].flags, &running);
	hc->in_action = 0;
	hc->nready = 0;
	check_done(hc);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	flush_ready(arg);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *hc = arg;
	int flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	if (!hc->nready) {
		hc->turn_ns = mono_ns();
		event_active(hc->flush, EV_TIMEOUT, 0);
	}
	if (hc->nready == hc->cap_ready) {
		hc->cap_ready = hc->cap_ready ? hc->cap_ready * 2 : 64;
		hc->ready = xrealloc(hc->ready, hc->cap_ready * sizeof(*hc->ready));
	}
	hc->ready[hc->nready++] = (struct ready){ fd, flags };
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct httpc *hc = arg;
	int running;

	(void)fd, (void)what;
	flush_ready(hc);	/* sockets ready this turn go first, with their time */
	hc->now_ns = mono_ns();
	hc->in_action = 1;
	curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	hc->in_action = 0;
	check_done(hc);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct httpc *hc = userp;
	struct sockw *w = socketp;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (w) {
			sockw_free(hc, w);
			curl_multi_assign(hc->multi, s, NULL);
		}
		return 0;
	}
	short ev = EV_PERSIST;
	if (what & CURL_POLL_IN)
		ev |= EV_READ;
	if (what & CURL_POLL_OUT)
		ev |= EV_WRITE;
	if (!w) {
		w = xcalloc(1, sizeof(*w));
		w->hc = hc;
		w->fd = s;
		w->next = hc->socks;
		if (w->next)
			w->next->prev = w;
		hc->socks = w;
		curl_multi_assign(hc->multi, s, w);
	} else {
		event_free(w->ev);
	}
	w->ev = event_new(hc->base, s, ev, on_socket_event, hc);
	event_add(w->ev, NULL);
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct httpc *hc = userp;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(hc->timer);
		return 0;
	}
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(hc->timer, &tv);
	return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;
	uint64_t t = x->hc->in_action ? x->hc->now_ns : mono_ns();

	if (x->req.on_data && x->req.on_data(x->req.arg, ptr, n, t)) {
		x->aborted = 1;
		return 0;	/* CURLE_WRITE_ERROR ends the transfer */
	}
	return n;
}

int httpc_new(struct event_base *base, long max_conns, struct httpc **out)
{
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return err_set(-EIO, "curl_global_init: %s", curl_easy_strerror(global_rc));
	struct httpc *hc = xcalloc(1, sizeof(*hc));
	hc->base = base;
	hc->multi = curl_multi_init();
	if (!hc->multi) {
		free(hc);
		return err_set(-ENOMEM, "curl_multi_init failed");
	}
	hc->timer = evtimer_new(base, on_timer, hc);
	hc->flush = event_new(base, -1, 0, on_flush, hc);
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc);
	if (max_conns > 0) {
		curl_multi_setopt(hc->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_conns);
		curl_multi_setopt(hc->multi, CURLMOPT_MAXCONNECTS, max_conns);
	} else {
		curl_multi_setopt(hc->multi, CURLMOPT_MAXCONNECTS, 10000L);
	}
	*out = hc;
	return 0;
}

int httpc_start(struct httpc *hc, const struct httpc_req *req)
{
	struct xfer *x = xcalloc(1, sizeof(*x));
	CURL *e = curl_easy_init();

	if (!e) {
		free(x);
		return err_set(-ENOMEM, "curl_easy_init failed");
	}
	x->hc = hc;
	x->easy = e;
	x->req = *req;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	/* Pass HTTP error bodies through to on_data; status is in on_done. */
	curl_easy_setopt(e, CURLOPT_FAILONERROR, 0L);
	if (req->timeout_ms > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	if (req->body) {
		x->body = xmalloc(req->body_len + 1);
		memcpy(x->body, req->body, req->body_len);
		x->body[req->body_len] = '\0';
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	}
	if (req->method)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	/* No "Expect: 100-continue" round trip for large prompts. */
	x->headers = curl_slist_append(NULL, "Expect:");
	for (const char *const *h = req->headers; h && *h; h++)
		x->headers = curl_slist_append(x->headers, *h);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

	CURLMcode mc = curl_multi_add_handle(hc->multi, e);
	if (mc != CURLM_OK) {
		curl_easy_cleanup(e);
		curl_slist_free_all(x->headers);
		free(x->body);
		free(x);
		return err_set(-EIO, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
	}
	x->next = hc->xfers;
	if (x->next)
		x->next->prev = x;
	hc->xfers = x;
	hc->active++;
	return 0;
}

long httpc_active(const struct httpc *hc)
{
	return hc->active;
}

void httpc_free(struct httpc *hc)
{
	if (!hc)
		return;
	while (hc->xfers) {
		struct xfer *x = hc->xfers;
		hc->xfers = x->next;
		curl_multi_remove_handle(hc->multi, x->easy);
		struct httpc_done d = { HTTPC_ABORTED, 0, mono_ns(), "aborted" };
		x->req.on_done(x->req.arg, &d);
		curl_easy_cleanup(x->easy);
		curl_slist_free_all(x->headers);
		free(x->body);
		free(x);
	}
	curl_multi_cleanup(hc->multi);
	while (hc->socks)
		sockw_free(hc, hc->socks);
	event_free(hc->timer);
	event_free(hc->flush);
	free(hc->ready);
	free(hc);
}
