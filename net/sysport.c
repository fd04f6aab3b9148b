/*
 * sysport.c - /health, /live and /metrics for every role (sysport.h).
 */
#include "net/sysport.h"

#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct sysport {
	struct sysport_role role;
	struct http_server *http;
};

static void reply_json(struct http_req *r, int status, struct strbuf *b)
{
	http_reply(r, status, "application/json", b->buf, b->len, NULL);
}

int sysport_handle(const struct sysport_role *role, struct http_req *r)
{
	const char *path = http_req_path(r);
	struct strbuf b = STRBUF_INIT;
	int live = !strcmp(path, "/live"), health = !strcmp(path, "/health");
	int metrics = !strcmp(path, "/metrics"), other = 0;

	if (!live && !health && !metrics) {
		/* get_json runs for any method: it answers with the body only
		 * for GET (HEAD reaches handlers as GET). */
		if (!role->get_json || !role->get_json(role->arg, path, &b)) {
			sb_release(&b);
			return 0;
		}
		other = 1;
	}
	if (strcmp(http_req_method(r), "GET")) {
		http_reply_method_not_allowed(r, "GET, HEAD");
	} else if (other) {
		reply_json(r, 200, &b);
	} else if (live) {
		sb_adds(&b, "{\"status\":\"live\"}");
		reply_json(r, 200, &b);
	} else if (health) {
		struct strbuf fields = STRBUF_INIT;
		int ok = role->health(role->arg, &fields);
		sb_addf(&b, "{\"status\":\"%s\"%s}", ok ? "healthy" : "stopping", fields.buf);
		sb_release(&fields);
		reply_json(r, ok ? 200 : 503, &b);
	} else {
		role->metrics(role->arg, &b);
		http_reply(r, 200, METRICS_TYPE, b.buf, b.len, NULL);
	}
	sb_release(&b);
	return 1;
}

static void port_handler(struct http_req *r, void *arg)
{
	struct sysport *s = arg;

	if (!sysport_handle(&s->role, r))
		http_reply_no_such_path(r);
}

int sysport_new(struct event_base *base, const struct sysport_role *role, const char *host,
		int port, struct sysport **out)
{
	struct sysport *s = xcalloc(1, sizeof(*s));
	int rc;

	s->role = *role;
	rc = http_server_new(base, NULL, port_handler, s, &s->http);
	if (rc == 0)
		rc = http_server_listen(s->http, host, port);
	if (rc < 0) {
		rc = err_set(rc, "system port: %s", err_msg());
		sysport_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int sysport_port(const struct sysport *s)
{
	return http_server_port(s->http);
}

void sysport_free(struct sysport *s)
{
	if (!s)
		return;
	http_server_free(s->http);
	free(s);
}
