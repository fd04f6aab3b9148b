/*
 * store_etcd_bench.c - the etcd store backend (store/store_etcd.c) against
 * a plain libcurl loop over the same JSON gateway in the same run ('make
 * bench' via test/bench/store_etcd.sh, which starts a private etcd).
 *
 *   store_etcd_bench HOST:PORT [N]      (N = 2000 puts, then N gets)
 *
 * dyn: store_put and store_get, one after another.  Baseline: one reused
 * curl handle posting the same /v3/kv/put and /v3/kv/range bodies, what
 * any HTTP client of the gateway does at best.  Watch delivery: the time
 * from a put's return to its event's callback on a loop watching the
 * prefix (50 puts; the generic layer polls the change feed every 50 ms),
 * no baseline.  Each throughput is the best of 3 rounds, dyn and the
 * baseline alternating (the host is shared).  Prints a table and FIGURE
 * lines (test/bench/run.sh).
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t discard(char *p, size_t sz, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return sz * n;
}

/* N posts of /v3/kv/put (or range) on one handle; ops per second. */
static double curl_loop(const char *hostport, const char *op, int n)
{
	CURL *c = curl_easy_init();
	struct strbuf url = STRBUF_INIT, body = STRBUF_INIT;
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char key[32];

	sb_addf(&url, "http://%s/v3/kv/%s", hostport, op);
	curl_easy_setopt(c, CURLOPT_URL, url.buf);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	uint64_t t0 = mono_ns();
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "c/%d", i);
		sb_reset(&body);
		sb_adds(&body, "{\"key\":\"");
		store_b64_encode(&body, (const unsigned char *)key, strlen(key));
		sb_adds(&body, strcmp(op, "put") ? "\"}" : "\",\"value\":\"dmFsdWU=\"}");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.buf);
		if (curl_easy_perform(c) != CURLE_OK) {
			fprintf(stderr, "store_etcd_bench: curl %s failed\n", op);
			exit(1);
		}
	}
	double s = (double)(mono_ns() - t0) / 1e9;
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	sb_release(&url);
	sb_release(&body);
	return n / s;
}

static double best(double a, double b)
{
	return a > b ? a : b;
}

static uint64_t seen_ns;
static int seen;

static void on_event(const struct store_event *ev, void *arg)
{
	(void)arg;
	if (ev->type == STORE_EV_PUT) {
		seen_ns = mono_ns();
		seen++;
	}
}

static void die(const char *what)
{
	fprintf(stderr, "store_etcd_bench: %s: %s\n", what, err_msg());
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: store_etcd_bench HOST:PORT [N]\n");
		return 2;
	}
	int n = argc > 2 ? atoi(argv[2]) : 2000;
	char url[256];
	snprintf(url, sizeof(url), "etcd://%s", argv[1]);
	struct event_base *base = event_base_new();
	struct store *s;
	if (store_open(url, base, &s) < 0)
		die("open");

	double put = 0, get = 0, cput = 0, cget = 0;
	for (int round = 0; round < 3; round++) {
		char key[32];
		uint64_t t0 = mono_ns();
		for (int i = 0; i < n; i++) {
			snprintf(key, sizeof(key), "b/%d", i);
			if (store_put(s, key, "value", 5, 0) < 0)
				die("put");
		}
		put = best(put, n / ((double)(mono_ns() - t0) / 1e9));
		cput = best(cput, curl_loop(argv[1], "put", n));
		t0 = mono_ns();
		for (int i = 0; i < n; i++) {
			struct store_kv kv;
			snprintf(key, sizeof(key), "b/%d", i);
			if (store_get(s, key, &kv) < 0)
				die("get");
			store_kv_free(&kv);
		}
		get = best(get, n / ((double)(mono_ns() - t0) / 1e9));
		cget = best(cget, curl_loop(argv[1], "range", n));
	}

	struct store_watch *w;
	if (store_watch(s, "lat/", on_event, NULL, &w) < 0)
		die("watch");
	struct timeval settle = { 0, 300000 };
	event_base_loopexit(base, &settle);
	event_base_dispatch(base);
	double sum = 0, worst = 0;
	int rounds = 50;
	for (int i = 0; i < rounds; i++) {
		int before = seen;
		if (store_put(s, "lat/k", "v", 1, 0) < 0)
			die("put");
		uint64_t p = mono_ns();
		uint64_t end = mono_ms() + 5000;
		while (seen == before && mono_ms() < end) {
			struct timeval tv = { 0, 1000 };
			event_base_loopexit(base, &tv);
			event_base_dispatch(base);
		}
		if (seen == before) {
			fprintf(stderr, "store_etcd_bench: a watch event never came\n");
			return 1;
		}
		double ms = (double)(seen_ns - p) / 1e6;
		sum += ms;
		worst = ms > worst ? ms : worst;
	}
	store_unwatch(w);
	store_close(s);
	event_base_free(base);

	printf("%-28s %12s %12s %8s\n", "etcd gateway, same host", "dyn", "curl loop", "ratio");
	printf("%-28s %12.0f %12.0f %8.2f\n", "put/s", put, cput, put / cput);
	printf("%-28s %12.0f %12.0f %8.2f\n", "get/s", get, cget, get / cget);
	printf("%-28s %12.1f %12s\n", "watch delivery mean ms", sum / rounds, "-");
	printf("%-28s %12.1f %12s\n", "watch delivery max ms", worst, "-");
	printf("FIGURE etcd_put %.0f ops/s %.2f curl_loop\n", put, put / cput);
	printf("FIGURE etcd_get %.0f ops/s %.2f curl_loop\n", get, get / cget);
	printf("FIGURE etcd_watch_delivery %.1f ms - -\n", sum / rounds);
	return 0;
}
