/*
 * store.c - "dyn store": inspect and edit the discovery store.
 *
 *   dyn store [--store URL] ls [PREFIX] [--json]
 *   dyn store [--store URL] get KEY
 *   dyn store [--store URL] put KEY VALUE|- [--ttl SECONDS]
 *   dyn store [--store URL] rm KEY
 *   dyn store [--store URL] watch PREFIX [--count N]
 *
 * See man/dyn-store.1 (the command) and man/dyn-store.5 (the records).
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/runtime.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_TTL_S 86400

static const char *store_opt;
static double ttl_opt;
static int json_opt;
static long count_opt;

static const struct opt store_opts[] = {
	{ "store", OPT_STRING, &store_opt, "URL",
	  "discovery store: file://DIR, sqlite://PATH or etcd://HOST:PORT[,HOST:PORT...]", 0, 0, NULL },
	{ "ttl", OPT_DOUBLE, &ttl_opt, "SECONDS",
	  "put: bind the key to a new lease of SECONDS (0 = none); it is not"
	  " renewed, so the key expires", 0, MAX_TTL_S, NULL },
	{ "json", OPT_BOOL, &json_opt, NULL,
	  "ls: print JSON lines instead of KEY<TAB>VALUE", 0, 0, NULL },
	{ "count", OPT_INT, &count_opt, "N",
	  "watch: exit after N put/delete events (0 = until interrupted)", 0, 0, NULL },
	{ 0 },
};

static const struct opt_cmd store_cmd = {
	.name = "store",
	.usage = "[--store URL] ls [PREFIX] | get KEY | put KEY VALUE|- [--ttl SECONDS]"
		 " | rm KEY | watch PREFIX [--count N]",
	.summary = "Inspect and edit the discovery store shared by dyn processes.",
	.details =
		"Verbs:\n"
		"  ls [PREFIX]         list keys under PREFIX (all keys without it), sorted,\n"
		"                      one KEY<TAB>VALUE line each (control bytes escaped)\n"
		"  get KEY             print the value of KEY\n"
		"  put KEY VALUE|-     set KEY to VALUE (- reads the value from stdin)\n"
		"  rm KEY              delete KEY\n"
		"  watch PREFIX        print the keys under PREFIX, a {\"type\":\"synced\"} line,\n"
		"                      then every change, as JSON lines, until Ctrl-C\n"
		"Exit status: 0 success, 1 failure or missing key, 2 usage error.\n"
		"Record formats and key layout: man 5 dyn-store.",
	.opts = store_opts,
};

static const char *const verbs[] = { "ls", "get", "put", "rm", "watch", NULL };

/* Exit status for a store error: bad input is a usage error. */
static int store_fail(int rc, const char *what)
{
	if (what)
		fprintf(stderr, "dyn store: %s: %s\n", what, err_msg());
	else
		fprintf(stderr, "dyn store: %s\n", err_msg());
	return rc == -EINVAL || rc == -ENOTSUP ? EXIT_USAGE : 1;
}

static int utf8_ok(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned c = s[i], n;
		uint32_t cp;
		if (c < 0x80) { i++; continue; }
		if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
		else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
		else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
		else return 0;
		if (len - i < n)
			return 0;
		for (unsigned k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
	}
	return 1;
}

static void add_base64(struct strbuf *sb, const unsigned char *p, size_t len)
{
	static const char t[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		sb_addch(sb, t[v >> 18]);
		sb_addch(sb, t[(v >> 12) & 63]);
		sb_addch(sb, i + 1 < len ? t[(v >> 6) & 63] : '=');
		sb_addch(sb, i + 2 < len ? t[v & 63] : '=');
	}
}

/* ,"value":"..." for UTF-8 text, ,"value64":"..." (base64) otherwise. */
static void add_json_value(struct strbuf *sb, const char *v, size_t len)
{
	if (utf8_ok((const unsigned char *)v, len)) {
		sb_adds(sb, ",\"value\":");
		sb_add_json_str(sb, v, len);
	} else {
		sb_adds(sb, ",\"value64\":\"");
		add_base64(sb, (const unsigned char *)v, len);
		sb_addch(sb, '"');
	}
}

/* Text for KEY<TAB>VALUE lines: backslash, tab, newline and other control
 * bytes (and bytes that are not UTF-8) are escaped C-style. */
static void add_escaped(struct strbuf *sb, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len; i++) {
		unsigned c = p[i];
		switch (c) {
		case '\\': sb_adds(sb, "\\\\"); continue;
		case '\t': sb_adds(sb, "\\t"); continue;
		case '\n': sb_adds(sb, "\\n"); continue;
		case '\r': sb_adds(sb, "\\r"); continue;
		}
		if (c < 0x20 || c == 0x7f) {
			sb_addf(sb, "\\x%02x", c);
			continue;
		}
		if (c >= 0x80) {
			size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
			if (n <= len - i && utf8_ok(p + i, n)) {
				sb_add(sb, p + i, n);
				i += n - 1;
			} else {
				sb_addf(sb, "\\x%02x", c);
			}
			continue;
		}
		sb_addch(sb, (int)c);
	}
}

static int flush_out(struct strbuf *sb)
{
	if (sb->len && fwrite(sb->buf, 1, sb->len, stdout) != sb->len)
		return -1;
	sb_reset(sb);
	return fflush(stdout) == 0 ? 0 : -1;
}

static int do_ls(struct store *s, const char *prefix)
{
	struct store_kv *kvs;
	size_t n;
	struct strbuf sb = STRBUF_INIT;
	int rc = store_list(s, prefix, &kvs, &n, NULL);
	if (rc < 0)
		return store_fail(rc, "ls");
	if (n == 0 && !json_opt)	/* say where nothing was found */
		fprintf(stderr, "dyn store ls: no keys%s%s in %s (--store or DYN_STORE picks "
				"another store)\n", *prefix ? " under " : "", prefix, store_url(s));
	for (size_t i = 0; i < n; i++) {
		if (json_opt) {
			sb_adds(&sb, "{\"key\":");
			sb_add_json_str(&sb, kvs[i].key, strlen(kvs[i].key));
			add_json_value(&sb, kvs[i].value, kvs[i].len);
			sb_addf(&sb, ",\"revision\":%" PRId64, kvs[i].mod_revision);
			if (kvs[i].lease)
				sb_addf(&sb, ",\"lease\":\"%016" PRIx64 "\"", (uint64_t)kvs[i].lease);
			sb_adds(&sb, "}\n");
		} else {
			add_escaped(&sb, kvs[i].key, strlen(kvs[i].key));
			sb_addch(&sb, '\t');
			add_escaped(&sb, kvs[i].value, kvs[i].len);
			sb_addch(&sb, '\n');
		}
		if (sb.len > 65536)
			flush_out(&sb);
	}
	rc = flush_out(&sb);
	sb_release(&sb);
	store_kvs_free(kvs, n);
	if (rc < 0)
		return cmd_fail("store", "writing the output: %s", strerror(errno));
	return 0;
}

static int do_get(struct store *s, const char *key)
{
	struct store_kv kv;
	int rc = store_get(s, key, &kv);
	if (rc == -ENOENT)
		return cmd_fail("store", "%s: no such key", key);
	if (rc < 0)
		return store_fail(rc, key);
	int bad = fwrite(kv.value, 1, kv.len, stdout) != kv.len ||
		  fputc('\n', stdout) == EOF || fflush(stdout) != 0;
	store_kv_free(&kv);
	return bad ? cmd_fail("store", "writing the output: %s", strerror(errno)) : 0;
}

static int do_put(struct store *s, const char *key, const char *value)
{
	struct strbuf in = STRBUF_INIT;
	const char *val = value;
	size_t len = strlen(value);
	int64_t lease = 0;
	int rc;

	if (!strcmp(value, "-")) {
		char buf[65536];
		size_t n;
		while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
			sb_add(&in, buf, n);
			if (in.len > STORE_VALUE_MAX)
				break;
		}
		if (ferror(stdin)) {
			sb_release(&in);
			return cmd_fail("store", "reading stdin: %s", strerror(errno));
		}
		/* Reading stopped at the limit: the whole value is not known. */
		if (in.len > STORE_VALUE_MAX) {
			sb_release(&in);
			return cmd_fail("store", "the value on stdin is over the %d-byte limit",
					STORE_VALUE_MAX);
		}
		val = in.buf;
		len = in.len;
	}
	if (ttl_opt > 0) {
		int64_t ttl_ms = (int64_t)llround(ttl_opt * 1000.0);
		rc = store_lease_grant(s, ttl_ms > 0 ? ttl_ms : 1, &lease);
		if (rc < 0) {
			sb_release(&in);
			return store_fail(rc, "granting a lease");
		}
	}
	rc = store_put(s, key, val, len, lease);
	sb_release(&in);
	if (rc < 0) {
		if (lease)
			store_lease_revoke(s, lease);
		return store_fail(rc, key);
	}
	return 0;
}

static int do_rm(struct store *s, const char *key)
{
	int rc = store_delete(s, key);
	if (rc == -ENOENT)
		return cmd_fail("store", "%s: no such key", key);
	if (rc < 0)
		return store_fail(rc, key);
	return 0;
}

struct watch_ctx {
	struct runtime *rt;
	long seen;
	int done;
	int failed;
};

static void on_event(const struct store_event *ev, void *arg)
{
	struct watch_ctx *w = arg;
	struct strbuf sb = STRBUF_INIT;

	if (w->done)
		return;
	switch (ev->type) {
	case STORE_EV_SYNCED:
		sb_adds(&sb, "{\"type\":\"synced\"}\n");
		break;
	case STORE_EV_PUT:
	case STORE_EV_DELETE:
		sb_addf(&sb, "{\"type\":\"%s\",\"key\":",
			ev->type == STORE_EV_PUT ? "put" : "delete");
		sb_add_json_str(&sb, ev->kv.key, strlen(ev->kv.key));
		if (ev->type == STORE_EV_PUT)
			add_json_value(&sb, ev->kv.value, ev->kv.len);
		sb_addf(&sb, ",\"revision\":%" PRId64 "}\n", ev->kv.mod_revision);
		w->seen++;
		break;
	}
	if (flush_out(&sb) < 0) {
		w->failed = 1;
		w->done = 1;
		runtime_shutdown(w->rt, "output closed");
	} else if (count_opt > 0 && w->seen >= count_opt) {
		w->done = 1;
		runtime_shutdown(w->rt, "event count reached");
	}
	sb_release(&sb);
}

static int do_watch(const char *url, const char *prefix)
{
	struct runtime rt;
	struct store_watch *w;
	struct watch_ctx ctx = { &rt, 0, 0, 0 };

	int rc = runtime_init(&rt, 0);
	if (rc < 0) {
		runtime_free(&rt);
		return cmd_fail("store", "%s", err_msg());
	}
	/* No process lease (store_process_open): a watcher registers nothing. */
	rc = store_open(url, rt.base, &rt.store);
	if (rc < 0) {
		runtime_free(&rt);
		return store_fail(rc, NULL);
	}
	rc = store_watch(rt.store, prefix, on_event, &ctx, &w);
	if (rc < 0) {
		int status = store_fail(rc, "watch");
		store_close(rt.store);
		runtime_free(&rt);
		return status;
	}
	runtime_run(&rt);
	store_close(rt.store);	/* and its watch, before the loop goes */
	runtime_free(&rt);
	return ctx.failed ? 1 : 0;
}

int cmd_store(int argc, char **argv)
{
	int nargs;

	store_opt = store_default_url();
	ttl_opt = 0;
	json_opt = 0;
	count_opt = 0;
	int rc = cmd_options(&store_cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs < 1)
		return cmd_usage_error("store", "missing verb: ls, get, put, rm or watch "
				       "(see 'dyn store --help')");
	const char *verb = argv[0];
	int want_min, want_max;
	if (!strcmp(verb, "ls")) {
		want_min = 1, want_max = 2;
	} else if (!strcmp(verb, "get") || !strcmp(verb, "rm") || !strcmp(verb, "watch")) {
		want_min = want_max = 2;
	} else if (!strcmp(verb, "put")) {
		want_min = want_max = 3;
	} else {
		const char *near = str_closest(verb, verbs);
		if (near)
			return cmd_usage_error("store", "unknown verb '%s' (did you mean '%s'?)",
					       verb, near);
		return cmd_usage_error("store", "unknown verb '%s' (use ls, get, put, rm or watch)",
				       verb);
	}
	if (nargs < want_min || nargs > want_max) {
		static const char *const usage[][2] = {
			{ "ls", "ls [PREFIX]" }, { "get", "get KEY" },
			{ "put", "put KEY VALUE|- [--ttl SECONDS]" }, { "rm", "rm KEY" },
			{ "watch", "watch PREFIX [--count N]" },
		};
		const char *u = verb;
		for (size_t i = 0; i < ARRAY_SIZE(usage); i++)
			if (!strcmp(usage[i][0], verb))
				u = usage[i][1];
		return cmd_usage_error("store", "%s arguments (usage: dyn store %s)",
				       nargs < want_min ? "missing" : "too many", u);
	}
	if (count_opt < 0)
		return cmd_usage_error("store", "--count: %ld is negative", count_opt);
	if (!isfinite(ttl_opt) || ttl_opt < 0)
		return cmd_usage_error("store", "--ttl: must be a number of seconds >= 0");

	if (!strcmp(verb, "watch"))
		return do_watch(store_opt, argv[1]);

	struct store *s;
	rc = store_open(store_opt, NULL, &s);
	if (rc < 0)
		return store_fail(rc, NULL);
	if (!strcmp(verb, "ls"))
		rc = do_ls(s, nargs > 1 ? argv[1] : "");
	else if (!strcmp(verb, "get"))
		rc = do_get(s, argv[1]);
	else if (!strcmp(verb, "put"))
		rc = do_put(s, argv[1], argv[2]);
	else
		rc = do_rm(s, argv[1]);
	store_close(s);
	return rc;
}
