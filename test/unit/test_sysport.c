/*
 * test_sysport.c - /health, /live and /metrics (net/sysport.h) as a client
 * sees them: raw HTTP/1.1 requests from a client thread, answers parsed by
 * hand and by cJSON, checked against what sysport.h documents.
 */
#include "net/sysport.h"
#include "net/http.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "check.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a role to serve -------------------------------------------------- */

struct fake_role {
	int healthy;
	int health_calls, metrics_calls;
};

static int fake_health(void *arg, struct strbuf *fields)
{
	struct fake_role *f = arg;
	f->health_calls++;
	sb_adds(fields, ",\"model\":\"m\",\"n\":2");
	return f->healthy;
}

static void fake_metrics(void *arg, struct strbuf *out)
{
	struct fake_role *f = arg;
	f->metrics_calls++;
	sb_adds(out, "# HELP dyn_x_total X.\n# TYPE dyn_x_total counter\ndyn_x_total 7\n");
}

static int fake_get_json(void *arg, const char *path, struct strbuf *out)
{
	(void)arg;
	if (strcmp(path, "/debug/things"))
		return 0;
	sb_adds(out, "{\"things\":[]}");
	return 1;
}

/* ---- a client thread --------------------------------------------------- */

struct exchange {
	int port;
	const char *request;
	struct strbuf response;
	atomic_int done;
};

static void *client(void *arg)
{
	struct exchange *x = arg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)x->port) };
	char buf[4096];
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		size_t len = strlen(x->request), off = 0;
		while (off < len && (n = write(fd, x->request + off, len - off)) > 0)
			off += (size_t)n;
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			sb_add(&x->response, buf, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	atomic_store(&x->done, 1);
	return NULL;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Send "METHOD PATH" (Connection: close) to port and run base until the
 * whole response is in. */
static void exchange(struct event_base *base, int port, const char *method, const char *path,
		     struct strbuf *out)
{
	struct strbuf req = STRBUF_INIT;
	struct exchange x = { .port = port, .response = STRBUF_INIT };
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = { 0, 5000 };
	pthread_t th;
	uint64_t end = mono_ms() + 5000;

	sb_addf(&req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", method, path,
		strcmp(method, "POST") ? "" : "Content-Length: 0\r\n");
	x.request = req.buf;
	event_add(t, &tv);
	pthread_create(&th, NULL, client, &x);
	while (!atomic_load(&x.done) && mono_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	pthread_join(th, NULL);
	event_free(t);
	sb_release(&req);
	*out = x.response;
}

/* ---- parsing the response ------------------------------------------------ */

struct resp {
	int status;
	char head[2048];
	const char *body;	/* into the response */
	size_t body_len;
};

static void parse(const struct strbuf *raw, struct resp *r)
{
	const char *sep = strstr(raw->buf, "\r\n\r\n");
	CHECK_MSG(sep, "no end of head in %.200s", raw->buf);
	CHECK(sscanf(raw->buf, "HTTP/1.1 %d ", &r->status) == 1);
	snprintf(r->head, sizeof(r->head), "%.*s", (int)(sep - raw->buf) + 2, raw->buf);
	r->body = sep + 4;
	r->body_len = raw->len - (size_t)(sep + 4 - raw->buf);
}

/* A header's value ("" if absent). */
static const char *header(const struct resp *r, const char *name, char *val, size_t n)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\r\n%s: ", name);
	const char *p = strstr(r->head, pat);
	val[0] = 0;
	if (p) {
		p += strlen(pat);
		snprintf(val, n, "%.*s", (int)strcspn(p, "\r"), p);
	}
	return val;
}

/* The error object's members of an OpenAI-shaped error body. */
static void check_error_body(const struct resp *r, const char *type)
{
	cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
	cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	CHECK_MSG(cJSON_IsObject(e), "not an error body: %.*s", (int)r->body_len, r->body);
	cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
	int ok = cJSON_IsString(msg) && *msg->valuestring &&
		 cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "code")) &&
		 cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "type")) &&
		 !strcmp(cJSON_GetObjectItemCaseSensitive(e, "type")->valuestring, type) &&
		 cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "param"));
	cJSON_Delete(j);
	CHECK_MSG(ok, "error body %.*s", (int)r->body_len, r->body);
}

/* ---- the tests ---------------------------------------------------------------- */

struct fixture {
	struct event_base *base;
	struct fake_role role;
	struct sysport *sp;
	int port;
};

static void setup(struct fixture *f, int with_get_json)
{
	memset(f, 0, sizeof(*f));
	f->base = event_base_new();
	f->role.healthy = 1;
	struct sysport_role r = { fake_health, fake_metrics, with_get_json ? fake_get_json : NULL,
				  &f->role };
	CHECK(sysport_new(f->base, &r, "127.0.0.1", 0, &f->sp) == 0);
	f->port = sysport_port(f->sp);
	CHECK(f->port > 0);
}

static void teardown(struct fixture *f)
{
	sysport_free(f->sp);
	event_base_free(f->base);
}

static void get(struct fixture *f, const char *method, const char *path, struct strbuf *raw,
		struct resp *r)
{
	exchange(f->base, f->port, method, path, raw);
	parse(raw, r);
}

TEST(health_healthy_and_stopping)
{
	struct fixture f;
	struct strbuf raw;
	struct resp r;
	char v[128];

	setup(&f, 0);
	get(&f, "GET", "/health", &raw, &r);
	CHECK_INT(r.status, 200);
	CHECK_STR(header(&r, "Content-Type", v, sizeof(v)), "application/json");
	CHECK_MSG(r.body_len == strlen("{\"status\":\"healthy\",\"model\":\"m\",\"n\":2}") &&
		  !memcmp(r.body, "{\"status\":\"healthy\",\"model\":\"m\",\"n\":2}", r.body_len),
		  "body %.*s", (int)r.body_len, r.body);
	sb_release(&raw);
	f.role.healthy = 0;
	get(&f, "GET", "/health", &raw, &r);
	CHECK_INT(r.status, 503);
	CHECK_MSG(r.body_len == strlen("{\"status\":\"stopping\",\"model\":\"m\",\"n\":2}") &&
		  !memcmp(r.body, "{\"status\":\"stopping\",\"model\":\"m\",\"n\":2}", r.body_len),
		  "body %.*s", (int)r.body_len, r.body);
	sb_release(&raw);
	/* live whatever the health */
	get(&f, "GET", "/live", &raw, &r);
	CHECK_INT(r.status, 200);
	CHECK_MSG(r.body_len == 17 && !memcmp(r.body, "{\"status\":\"live\"}", 17), "body %.*s",
		  (int)r.body_len, r.body);
	sb_release(&raw);
	teardown(&f);
}

TEST(metrics_text_format)
{
	struct fixture f;
	struct strbuf raw;
	struct resp r;
	char v[128];

	setup(&f, 0);
	get(&f, "GET", "/metrics", &raw, &r);
	CHECK_INT(r.status, 200);
	CHECK_STR(header(&r, "Content-Type", v, sizeof(v)),
		  "text/plain; version=0.0.4; charset=utf-8");
	CHECK(r.body_len > 0 && strstr(r.body, "\ndyn_x_total 7\n"));
	CHECK_INT(f.role.metrics_calls, 1);
	sb_release(&raw);
	teardown(&f);
}

/* HEAD: GET's status and Content-Length, no body (RFC 9110 9.3.2). */
TEST(head_is_get_without_body)
{
	static const char *const paths[] = { "/health", "/live", "/metrics" };
	struct fixture f;
	struct strbuf graw, hraw;
	struct resp g, h;
	char gl[32], hl[32];

	setup(&f, 0);
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		get(&f, "GET", paths[i], &graw, &g);
		get(&f, "HEAD", paths[i], &hraw, &h);
		CHECK_INT(h.status, g.status);
		CHECK_INT(h.body_len, 0);
		header(&g, "Content-Length", gl, sizeof(gl));
		CHECK_MSG(*gl && atol(gl) == (long)g.body_len, "%s: GET Content-Length %s",
			  paths[i], gl);
		CHECK_STR(header(&h, "Content-Length", hl, sizeof(hl)), gl);
		sb_release(&graw);
		sb_release(&hraw);
	}
	teardown(&f);
}

TEST(other_methods_405_with_allow)
{
	static const char *const methods[] = { "POST", "DELETE", "PUT" };
	static const char *const paths[] = { "/health", "/live", "/metrics" };
	struct fixture f;
	struct strbuf raw;
	struct resp r;
	char v[64];

	setup(&f, 0);
	for (size_t m = 0; m < ARRAY_SIZE(methods); m++)
		for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
			get(&f, methods[m], paths[i], &raw, &r);
			CHECK_MSG(r.status == 405, "%s %s: %d", methods[m], paths[i], r.status);
			CHECK_STR(header(&r, "Allow", v, sizeof(v)), "GET, HEAD");
			CHECK_STR(header(&r, "Content-Type", v, sizeof(v)), "application/json");
			check_error_body(&r, "invalid_request_error");
			sb_release(&raw);
		}
	/* a refused method asks nothing of the role */
	CHECK_INT(f.role.health_calls, 0);
	CHECK_INT(f.role.metrics_calls, 0);
	teardown(&f);
}

TEST(unknown_path_404)
{
	struct fixture f;
	struct strbuf raw;
	struct resp r;

	setup(&f, 0);
	get(&f, "GET", "/v1/models", &raw, &r);
	CHECK_INT(r.status, 404);
	check_error_body(&r, "not_found_error");
	sb_release(&raw);
	get(&f, "GET", "/healthz", &raw, &r);
	CHECK_INT(r.status, 404);
	sb_release(&raw);
	get(&f, "GET", "/debug/things", &raw, &r);	/* no get_json: unknown */
	CHECK_INT(r.status, 404);
	sb_release(&raw);
	teardown(&f);
}

TEST(get_json_paths)
{
	struct fixture f;
	struct strbuf raw;
	struct resp r;
	char v[64];

	setup(&f, 1);
	get(&f, "GET", "/debug/things", &raw, &r);
	CHECK_INT(r.status, 200);
	CHECK_STR(header(&r, "Content-Type", v, sizeof(v)), "application/json");
	CHECK(r.body_len == 13 && !memcmp(r.body, "{\"things\":[]}", 13));
	sb_release(&raw);
	get(&f, "POST", "/debug/things", &raw, &r);
	CHECK_INT(r.status, 405);
	CHECK_STR(header(&r, "Allow", v, sizeof(v)), "GET, HEAD");
	sb_release(&raw);
	get(&f, "GET", "/debug/other", &raw, &r);
	CHECK_INT(r.status, 404);
	sb_release(&raw);
	teardown(&f);
}

/* sysport_handle inside a role's own handler: the three paths are
 * answered, every other one is left to the role. */
static void own_handler(struct http_req *r, void *arg)
{
	if (sysport_handle(arg, r))
		return;
	http_reply(r, 418, "text/plain", "teapot", 6, NULL);
}

TEST(handle_inside_own_server)
{
	struct event_base *base = event_base_new();
	struct fake_role role = { .healthy = 1 };
	struct sysport_role sr = { fake_health, fake_metrics, NULL, &role };
	struct http_server *s;
	struct strbuf raw;
	struct resp r;

	CHECK(http_server_new(base, NULL, own_handler, &sr, &s) == 0);
	CHECK(http_server_listen(s, "127.0.0.1", 0) == 0);
	exchange(base, http_server_port(s), "GET", "/health", &raw);
	parse(&raw, &r);
	CHECK_INT(r.status, 200);
	sb_release(&raw);
	exchange(base, http_server_port(s), "POST", "/metrics", &raw);
	parse(&raw, &r);
	CHECK_INT(r.status, 405);
	sb_release(&raw);
	exchange(base, http_server_port(s), "GET", "/v1/models", &raw);
	parse(&raw, &r);
	CHECK_INT(r.status, 418);
	sb_release(&raw);
	http_server_free(s);
	event_base_free(base);
}

int main(void)
{
	return RUN_TESTS();
}
