/*
 * test_core.c - options, logging, strbuf, error messages, suggestions.
 */
#include "test/unit/check.h"

#include "core/err.h"
#include "core/log.h"
#include "core/opt.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static const char *const modes[] = { "kv", "round-robin", "random", NULL };

struct sample_opts {
	long port;
	double temp;
	int verbose;
	const char *mode;
	const char *store;
};

static struct sample_opts o;

static const struct opt sample[] = {
	{ "http-port", OPT_INT, &o.port, "PORT", "port", 1, 65535, NULL },
	{ "temperature", OPT_DOUBLE, &o.temp, "T", "temp", 0, 10, NULL },
	{ "verbose", OPT_BOOL, &o.verbose, NULL, "chatty", 0, 0, NULL },
	{ "router-mode", OPT_ENUM, &o.mode, "MODE", "mode", 0, 0, modes },
	{ "store", OPT_STRING, &o.store, "URL", "store", 0, 0, NULL },
	{ 0 },
};

static const struct opt_cmd sample_cmd = {
	.name = "sample", .usage = "[OPTIONS] ARGS", .summary = "a test", .opts = sample,
};

static void reset_opts(void)
{
	o = (struct sample_opts){ .port = 8000, .temp = 0, .verbose = 0,
				  .mode = "round-robin", .store = NULL };
	unsetenv("DYN_HTTP_PORT");
	unsetenv("DYN_VERBOSE");
	unsetenv("DYN_ROUTER_MODE");
	unsetenv("DYN_STORE");
	unsetenv("DYN_TEMPERATURE");
}

/* Parse a NULL-terminated list of words; returns opt_parse's result. */
static int parse(int *nargs, char **words)
{
	static char *argv[32];
	int argc = 0;
	argv[argc++] = "sample";
	while (*words && argc < 31)
		argv[argc++] = *words++;
	argv[argc] = NULL;
	return opt_parse(&sample_cmd, argc, argv, nargs);
}

TEST(opt_forms)
{
	int n;
	reset_opts();
	CHECK_INT(parse(&n, (char *[]){ "--http-port", "9000", "a", "--verbose",
					"--router-mode=kv", "b", "--store=file:///x", NULL }), 0);
	CHECK_INT(o.port, 9000);
	CHECK_INT(o.verbose, 1);
	CHECK_STR(o.mode, "kv");
	CHECK_STR(o.store, "file:///x");
	CHECK_INT(n, 2);
}

TEST(opt_negated_flag_and_double_dash)
{
	int n;
	reset_opts();
	o.verbose = 1;
	CHECK_INT(parse(&n, (char *[]){ "--no-verbose", "--", "--http-port", NULL }), 0);
	CHECK_INT(o.verbose, 0);
	CHECK_INT(o.port, 8000);
	CHECK_INT(n, 1);
}

TEST(opt_env_fallback_and_precedence)
{
	int n;
	reset_opts();
	setenv("DYN_HTTP_PORT", "7000", 1);
	setenv("DYN_ROUTER_MODE", "random", 1);
	setenv("DYN_VERBOSE", "yes", 1);
	CHECK_INT(parse(&n, (char *[]){ "--router-mode", "kv", NULL }), 0);
	CHECK_INT(o.port, 7000);	/* from the environment */
	CHECK_STR(o.mode, "kv");	/* command line wins */
	CHECK_INT(o.verbose, 1);
	setenv("DYN_HTTP_PORT", "seventy", 1);
	CHECK(parse(&n, (char *[]){ NULL }) < 0);
	CHECK(strstr(err_msg(), "DYN_HTTP_PORT") != NULL);
	reset_opts();
}

TEST(opt_errors_are_clear)
{
	int n;
	reset_opts();
	CHECK_INT(parse(&n, (char *[]){ "--http-prot", "1", NULL }), -EINVAL);
	CHECK(strstr(err_msg(), "did you mean '--http-port'") != NULL);
	CHECK(parse(&n, (char *[]){ "--http-port", "70000", NULL }) < 0);
	CHECK(strstr(err_msg(), "out of range") != NULL);
	CHECK(parse(&n, (char *[]){ "--http-port", "12abc", NULL }) < 0);
	CHECK(strstr(err_msg(), "not a valid integer") != NULL);
	CHECK(parse(&n, (char *[]){ "--router-mode", "rondom", NULL }) < 0);
	CHECK(strstr(err_msg(), "did you mean 'random'") != NULL);
	CHECK(parse(&n, (char *[]){ "--http-port", NULL }) < 0);
	CHECK(strstr(err_msg(), "needs a value") != NULL);
	CHECK(parse(&n, (char *[]){ "--no-http-port", NULL }) < 0);
	CHECK(parse(&n, (char *[]){ "--temperature", "nan", NULL }) < 0);
	CHECK(parse(&n, (char *[]){ "--verbose=maybe", NULL }) < 0);
	CHECK(parse(&n, (char *[]){ "-x", NULL }) < 0);
	CHECK_INT(parse(&n, (char *[]){ "--help", NULL }), OPT_HELP);
}

TEST(opt_usage_lists_every_option)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	reset_opts();
	opt_usage(&sample_cmd, f);
	fclose(f);
	for (const struct opt *p = sample; p->name; p++)
		CHECK_MSG(strstr(buf, p->name), "--help lacks %s", p->name);
	CHECK(strstr(buf, "[default: 8000]") != NULL);
	CHECK(strstr(buf, "kv|round-robin|random") != NULL);
	free(buf);
}

TEST(opt_env_name)
{
	char buf[64];
	opt_env_name("kv-overlap-score-weight", buf, sizeof(buf));
	CHECK_STR(buf, "DYN_KV_OVERLAP_SCORE_WEIGHT");
}

/* Run log_write with stderr redirected; return what it wrote. */
static char *capture_log(enum log_level lvl, const char *mod, const char *msg)
{
	static char out[4096];
	char path[] = "/tmp/dyn-test-log.XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	dup2(fd, 2);
	LOG_AT(lvl, mod, "%s", msg);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	ssize_t n = read(fd, out, sizeof(out) - 1);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return out;
}

TEST(log_levels_per_module)
{
	CHECK_INT(log_configure("router=debug,warn", NULL), 0);
	CHECK(capture_log(LOG_INFO, "store", "hidden")[0] == '\0');
	CHECK(strstr(capture_log(LOG_WARN, "store", "shown"), "warn  store: shown"));
	CHECK(strstr(capture_log(LOG_DEBUG, "router", "route"), "router: route"));
	CHECK(capture_log(LOG_TRACE, "router", "x")[0] == '\0');
	CHECK(log_configure("loud", NULL) < 0);
	CHECK(strstr(err_msg(), "unknown level"));
	CHECK(log_configure("info", "xml") < 0);
	CHECK_INT(log_configure(NULL, NULL), 0);
}

TEST(log_json_lines_parse)
{
	CHECK_INT(log_configure("info", "json"), 0);
	char *line = capture_log(LOG_ERROR, "rpc", "quote \" newline \n tab \t bad \xff end");
	CHECK(line[strlen(line) - 1] == '\n');
	cJSON *j = cJSON_Parse(line);
	CHECK_MSG(j, "not JSON: %s", line);
	CHECK_STR(cJSON_GetObjectItem(j, "level")->valuestring, "error");
	CHECK_STR(cJSON_GetObjectItem(j, "module")->valuestring, "rpc");
	CHECK_STR(cJSON_GetObjectItem(j, "msg")->valuestring,
		  "quote \" newline \n tab \t bad \xef\xbf\xbd end");
	CHECK(cJSON_IsNumber(cJSON_GetObjectItem(j, "pid")));
	cJSON_Delete(j);
	CHECK_INT(log_configure(NULL, NULL), 0);
}

TEST(strbuf_basics)
{
	struct strbuf sb = STRBUF_INIT;
	CHECK_STR(sb.buf, "");
	for (int i = 0; i < 1000; i++)
		sb_addf(&sb, "%d,", i);
	CHECK(sb.len == strlen(sb.buf));
	CHECK(!strncmp(sb.buf, "0,1,2,", 6));
	sb_remove(&sb, 0, 2);
	CHECK(!strncmp(sb.buf, "1,2,", 4));
	sb_reset(&sb);
	sb_add(&sb, "a\0b", 3);
	CHECK_INT(sb.len, 3);
	size_t len;
	char *p = sb_detach(&sb, &len);
	CHECK_INT(len, 3);
	CHECK(p[1] == '\0' && p[2] == 'b' && p[3] == '\0');
	free(p);
	CHECK_INT(sb.len, 0);
	sb_release(&sb);
}

TEST(strbuf_json_string_roundtrips_through_cjson)
{
	static const char *cases[] = {
		"plain", "", "\"\\/\b\f\n\r\t", "\x01\x1f\x7f", "héllo wörld ✓ 😀",
		"bad \xc3 \xed\xa0\x80 \xf5\x80\x80\x80 x",
	};
	static const char *want[] = {
		"plain", "", "\"\\/\b\f\n\r\t", "\x01\x1f\x7f", "héllo wörld ✓ 😀",
		"bad \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd x",
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct strbuf sb = STRBUF_INIT;
		sb_add_json_str(&sb, cases[i], strlen(cases[i]));
		cJSON *j = cJSON_Parse(sb.buf);
		CHECK_MSG(j && cJSON_IsString(j), "case %zu: not a JSON string: %s", i, sb.buf);
		CHECK_STR(j->valuestring, want[i]);
		cJSON_Delete(j);
		sb_release(&sb);
	}
}

TEST(err_messages)
{
	CHECK_INT(err_set(-ENOENT, "key %s not found", "a/b"), -ENOENT);
	CHECK_STR(err_msg(), "key a/b not found");
	CHECK_INT(err_wrap(-ENOENT, "store get"), -ENOENT);
	CHECK_STR(err_msg(), "store get: key a/b not found");
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	err_set(-1, "%s", big);
	err_wrap(-1, "%s", big);
	CHECK(strlen(err_msg()) < 1024);
}

TEST(suggestions)
{
	static const char *const cmds[] = { "frontend", "serve", "router", "run",
					    "store", "version", NULL };
	CHECK_STR(str_closest("frontent", cmds), "frontend");
	CHECK_STR(str_closest("srve", cmds), "serve");
	CHECK_STR(str_closest("stor", cmds), "store");
	CHECK(str_closest("xyzzyplugh", cmds) == NULL);
	CHECK_INT(str_distance("kitten", "sitting"), 3);
}

int main(void)
{
	return RUN_TESTS();
}
