/*
 * fuzz_http.c - libFuzzer target for the HTTP/1.1 server (net/http.h): the
 * request line and header parser, body framing (Content-Length, refused
 * chunked bodies, Expect), pipelining, HEAD, and the CORS preflight, as a
 * peer's bytes arriving on a real loopback connection.  Run with
 * `make fuzz`; seeds in fuzz_http.seed/.
 *
 * The input is sent in two pieces (split where its first byte says) to a
 * server with small limits.  Checked for every input, besides the
 * sanitizers' memory checks: whatever comes back is a sequence of whole
 * responses, each starting with a status line "HTTP/1.x NNN "; the server
 * neither crashes nor hangs, and once the peer has gone it holds no
 * request.
 */
#include "core/strbuf.h"
#include "net/http.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct event_base *base;
static struct http_server *srv;
static int port;

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_http: invariant broken: %s\n", what);
		abort();
	}
}

/* Answers every request: /stream in two streamed pieces, anything else
 * with the length of the body it got. */
static void handler(struct http_req *r, void *arg)
{
	(void)arg;
	if (!strcmp(http_req_path(r), "/stream")) {
		if (http_stream_begin(r, 200, "text/plain", NULL) == 0) {
			http_stream_write(r, "a", 1);
			http_stream_write(r, "b", 1);
		}
		http_stream_end(r);
		return;
	}
	char body[64];
	size_t len;
	http_req_body(r, &len);
	int n = snprintf(body, sizeof(body), "%zu %.16s", len, http_req_method(r));
	http_reply(r, 200, "text/plain", body, (size_t)n, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	struct http_server_opts o = { .max_body = 4096, .max_head = 2048, .max_headers = 20,
				      .request_timeout_ms = 2000, .idle_timeout_ms = 2000,
				      .max_output = 1 << 16,
				      .allowed_origins = "http://a.example, http://b.example" };
	if (!base || http_server_new(base, &o, handler, NULL, &srv) < 0 ||
	    http_server_listen(srv, "127.0.0.1", 0) < 0)
		abort();
	port = http_server_port(srv);
	return 0;
}

/* Every response in out[0..n) starts with a status line; bodies are
 * skipped by their Content-Length (streams run to the end). */
static void check_responses(const char *out, size_t n)
{
	size_t i = 0;
	while (i < n) {
		check(n - i >= 13 && (!memcmp(out + i, "HTTP/1.1 ", 9) ||
				      !memcmp(out + i, "HTTP/1.0 ", 9)),
		      "a reply that does not start with a status line");
		for (int k = 9; k < 12; k++)
			check(out[i + k] >= '0' && out[i + k] <= '9', "a status that is no number");
		const char *end = memmem(out + i, n - i, "\r\n\r\n", 4);
		if (!end)
			return;		/* the peer left before the head was sent whole */
		const char *cl = memmem(out + i, (size_t)(end - (out + i)), "Content-Length: ", 16);
		if (!cl)
			return;		/* a stream or a 204: the rest is its body */
		size_t next = (size_t)(end + 4 - out);
		/* a reply to HEAD has the length but not the body (bodies here
		 * never start like a status line) */
		if (n - next >= 7 && !memcmp(out + next, "HTTP/1.", 7))
			i = next;
		else
			i = next + strtoul(cl + 16, NULL, 10);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	/* closed with a reset: thousands of connections a second would
	 * otherwise use up the ephemeral ports in TIME_WAIT */
	struct linger lg = { 1, 0 };
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	/* non-blocking, so that libFuzzer's timer signal cannot interrupt it */
	int rc = fd < 0 ? -1 : (fcntl(fd, F_SETFL, O_NONBLOCK), connect(fd, (struct sockaddr *)&a,
									 sizeof(a)));
	if (rc < 0 && fd >= 0 && (errno == EINPROGRESS || errno == EINTR)) {
		struct pollfd p = { fd, POLLOUT, 0 };
		int err = 0;
		socklen_t el = sizeof(err);
		while ((rc = poll(&p, 1, 5000)) < 0 && errno == EINTR)
			;
		rc = rc == 1 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) && !err ? 0 : -1;
		if (err)
			errno = err;
	}
	if (rc < 0) {
		fprintf(stderr, "fuzz_http: connect: %s\n", strerror(errno));
		abort();
	}

	size_t cut = size ? data[0] % (size + 1) : 0, sent = 0;
	struct strbuf out = STRBUF_INIT;
	int idle = 0;
	for (int turn = 0; turn < 2000 && idle < 4; turn++) {
		size_t upto = turn == 0 ? cut : size;
		if (sent < upto) {
			ssize_t w = write(fd, data + sent, upto - sent);
			if (w > 0)
				sent += (size_t)w;
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		char buf[4096];
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r > 0) {
			sb_add(&out, buf, (size_t)r);
			idle = 0;
		} else if (r == 0) {
			break;		/* the server closed */
		} else if (sent == size) {
			idle++;
			usleep(200);
		}
	}
	close(fd);
	/* let the server see the peer go (and free the connection) */
	for (int k = 0; k < 50 && (k < 2 || http_server_in_flight(srv)); k++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(200);
	}
	check_responses(out.buf ? out.buf : "", out.len);
	check(http_server_in_flight(srv) == 0, "a request held after its peer left");
	sb_release(&out);
	return 0;
}
