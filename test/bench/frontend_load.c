/*
 * frontend_load.c - load client for test/bench/frontend.sh: C concurrent
 * streaming requests for S seconds against either the frontend (HTTP,
 * POST /v1/completions with stream=true, one keep-alive connection per
 * client) or a worker's generate endpoint directly over the request
 * plane (the same prompt as token ids).  Prints one line:
 *   requests/s tokens/s p50_ms p99_ms
 * where tokens are streamed token chunks (HTTP) or DATA frames (RPC).
 *
 * usage: frontend_load http PORT MODEL PROMPT C S
 *        frontend_load rpc  ADDR ENDPOINT IDS C S     (IDS: "1,2,3")
 */
#include "core/proto/generate.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/rpc.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct load {
	struct event_base *base;
	uint64_t end_ns;
	long done, tokens, active;
	double *lat;
	size_t nlat, cap;
	struct strbuf req;
	/* rpc */
	struct rpc_client *cli;
	const char *addr, *ep;
	int port;
};

struct client {
	struct load *l;
	struct bufferevent *bev;
	uint64_t t0;
};

static void record(struct load *l, uint64_t t0)
{
	if (l->nlat == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 4096;
		l->lat = xrealloc(l->lat, l->cap * sizeof(double));
	}
	l->lat[l->nlat++] = (double)(mono_ns() - t0) / 1e6;
	l->done++;
}

static void http_send(struct client *c)
{
	if (mono_ns() >= c->l->end_ns) {
		bufferevent_free(c->bev);
		c->bev = NULL;
		if (--c->l->active == 0)
			event_base_loopbreak(c->l->base);
		return;
	}
	c->t0 = mono_ns();
	bufferevent_write(c->bev, c->l->req.buf, c->l->req.len);
}

static void http_read(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	static const char end[] = "data: [DONE]\n\n\r\n0\r\n\r\n";
	struct evbuffer_ptr p = evbuffer_search(in, end, sizeof(end) - 1, NULL);
	if (p.pos < 0)
		return;
	size_t n = (size_t)p.pos + sizeof(end) - 1;
	char *buf = xmalloc(n + 1);
	evbuffer_remove(in, buf, n);
	buf[n] = '\0';
	for (char *s = buf; (s = strstr(s, "\"finish_reason\":null")); s++)
		c->l->tokens++;
	free(buf);
	record(c->l, c->t0);
	http_send(c);
}

static void http_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		http_send(c);
		return;
	}
	fprintf(stderr, "frontend_load: connection failed\n");
	exit(1);
}

static void rpc_issue(struct load *l);

static void rpc_data(struct rpc_stream *st, const void *d, size_t n, unsigned f, void *arg)
{
	(void)st; (void)d; (void)n; (void)f;
	((struct load *)arg)->tokens++;
}

struct rpc_ctx {
	struct load *l;
	uint64_t t0;
};

static void rpc_end(struct rpc_stream *st, const void *d, size_t n, unsigned f, void *arg)
{
	struct rpc_ctx *x = arg;
	struct load *l = x->l;
	(void)st; (void)d; (void)n; (void)f;
	l->tokens--;	/* the last DATA frame carries only finish_reason and usage */
	record(l, x->t0);
	free(x);
	rpc_issue(l);
}

static void rpc_err(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	(void)st;
	(void)arg;
	fprintf(stderr, "frontend_load: rpc error %d: %s\n", code, msg);
	exit(1);
}

static void rpc_data_ctx(struct rpc_stream *st, const void *d, size_t n, unsigned f, void *arg)
{
	rpc_data(st, d, n, f, ((struct rpc_ctx *)arg)->l);
}

static void rpc_issue(struct load *l)
{
	static const struct rpc_stream_cbs cbs = { rpc_data_ctx, rpc_end, rpc_err };
	if (mono_ns() >= l->end_ns) {
		if (--l->active == 0)
			event_base_loopbreak(l->base);
		return;
	}
	struct rpc_ctx *x = xcalloc(1, sizeof(*x));
	x->l = l;
	x->t0 = mono_ns();
	if (rpc_call(l->cli, l->addr, l->ep, l->req.buf, l->req.len, 0, &cbs, x, NULL) < 0) {
		fprintf(stderr, "frontend_load: cannot call %s at %s\n", l->ep, l->addr);
		exit(1);
	}
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: frontend_load http PORT MODEL PROMPT C S | "
			"rpc ADDR ENDPOINT IDS C S\n");
		return 2;
	}
	struct load l = { 0 };
	long conc = atol(argv[5]);
	double secs = atof(argv[6]);
	l.base = event_base_new();
	l.active = conc;
	sb_init(&l.req, 0);
	uint64_t start = mono_ns();
	l.end_ns = start + (uint64_t)(secs * 1e9);
	if (!strcmp(argv[1], "http")) {
		struct strbuf body = STRBUF_INIT;
		sb_adds(&body, "{\"model\":");
		sb_add_json_str(&body, argv[3], strlen(argv[3]));
		sb_adds(&body, ",\"prompt\":");
		sb_add_json_str(&body, argv[4], strlen(argv[4]));
		/* Room for the whole prompt echoed back (completions default to 16). */
		sb_adds(&body, ",\"max_tokens\":256,\"stream\":true}");
		sb_addf(&l.req, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			"Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			body.len, body.buf);
		sb_release(&body);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		for (long i = 0; i < conc; i++) {
			struct client *c = xcalloc(1, sizeof(*c));
			c->l = &l;
			c->bev = bufferevent_socket_new(l.base, -1, BEV_OPT_CLOSE_ON_FREE);
			bufferevent_setcb(c->bev, http_read, NULL, http_event, c);
			bufferevent_enable(c->bev, EV_READ | EV_WRITE);
			bufferevent_socket_connect(c->bev, (struct sockaddr *)&sa, sizeof(sa));
		}
	} else {
		struct gen_request g;
		gen_request_init(&g);
		g.token_ids = xmalloc(4096 * sizeof(int32_t));
		for (char *s = argv[4]; *s && g.n_tokens < 4096; ) {
			g.token_ids[g.n_tokens++] = (int32_t)strtol(s, &s, 10);
			if (*s == ',')
				s++;
		}
		gen_request_encode(&g, &l.req);
		gen_request_release(&g);
		l.addr = argv[2];
		l.ep = argv[3];
		rpc_client_new(l.base, NULL, &l.cli);
		for (long i = 0; i < conc; i++)
			rpc_issue(&l);
	}
	event_base_dispatch(l.base);
	double el = (double)(mono_ns() - start) / 1e9;
	qsort(l.lat, l.nlat, sizeof(double), cmp);
	double p50 = l.nlat ? l.lat[l.nlat / 2] : 0;
	double p99 = l.nlat ? l.lat[(size_t)((double)(l.nlat - 1) * 0.99)] : 0;
	printf("%.1f %.1f %.3f %.3f\n", (double)l.done / el, (double)l.tokens / el, p50, p99);
	return 0;
}
