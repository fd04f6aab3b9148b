/*
 * sysport.h - the system endpoints every role serves: /health, /live and
 * /metrics, answered the same way by a worker's system port, a frontend
 * (on its API port) and `dyn router`'s system port.
 *
 *   GET /health   200 {"status":"healthy",...} while the role serves,
 *                 503 {"status":"stopping",...} once it drains; the role
 *                 adds its own members (model, instance_id, models...)
 *   GET /live     200 {"status":"live"}: the process answers
 *   GET /metrics  200, Prometheus text format 0.0.4
 *                 (Content-Type: text/plain; version=0.0.4; charset=utf-8)
 *
 * HEAD is answered as GET with the headers alone (same Content-Length,
 * no body).  Any other method gets 405 with "Allow: GET, HEAD".  On a
 * system port of its own (sysport_new) any other path gets 404.  Errors
 * have the OpenAI error shape that the frontend uses everywhere:
 *   {"error":{"message":"...","type":"invalid_request_error"|"not_found_error",
 *             "param":null,"code":405|404}}
 * These bodies are documented in dyn-serve(1), dyn-frontend(1) and
 * dyn-router(1).
 *
 * A role describes itself with struct sysport_role: whether it is healthy
 * (and the members its /health adds) and a metrics writer; optionally
 * more GET paths that answer JSON (the router's /debug/workers).
 *
 * Threading: everything runs on the thread of the event_base; the
 * callbacks are called there.  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_NET_SYSPORT_H
#define DYN_NET_SYSPORT_H

struct event_base;
struct http_req;
struct strbuf;
struct sysport;

struct sysport_role {
	/* 1 if the role serves (200), 0 if it is stopping (503).  Appends the
	 * role's members of the /health object to fields, each starting with
	 * ',' (",\"model\":\"m\""); may append nothing. */
	int (*health)(void *arg, struct strbuf *fields);
	/* Appends the role's metrics in the text format. */
	void (*metrics)(void *arg, struct strbuf *out);
	/* May be NULL: appends the JSON body of another GET path and returns
	 * 1, or returns 0 if the role has no such path. */
	int (*get_json)(void *arg, const char *path, struct strbuf *out);
	void *arg;
};

/* Answer r if its path is /health, /live or /metrics (or one get_json
 * knows), and return 1 (r is freed); else return 0 and leave r alone.
 * For a handler that serves these next to its own paths. */
int sysport_handle(const struct sysport_role *role, struct http_req *r);

/* A system port of its own: listens on host:port (0 = any free port) and
 * answers the paths above, 404 to the rest.  role is copied. */
int sysport_new(struct event_base *base, const struct sysport_role *role, const char *host,
		int port, struct sysport **out);
int sysport_port(const struct sysport *s);
/* Closes the port and its connections.  NULL is fine. */
void sysport_free(struct sysport *s);

#endif
