/*
 * log.c - leveled, per-module logging (see log.h).
 *
 * The configuration is a small table written once at start-up (before
 * threads) and read lock-free afterwards.
 */
#include "core/log.h"
#include "core/err.h"
#include "core/strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX_MODULES 32
#define LOG_MODULE_NAME 32

static const char *const level_names[] = {
	"error", "warn", "info", "debug", "trace",
};

static struct {
	int default_level;
	int json;
	int nmodules;
	struct {
		char name[LOG_MODULE_NAME];
		int level;
	} modules[LOG_MAX_MODULES];
} cfg = { .default_level = LOG_INFO };

int log_level_parse(const char *name)
{
	for (int i = 0; i <= LOG_TRACE; i++)
		if (!strcmp(name, level_names[i]))
			return i;
	if (!strcmp(name, "warning"))
		return LOG_WARN;
	return -1;
}

const char *log_level_name(enum log_level lvl)
{
	return lvl <= LOG_TRACE ? level_names[lvl] : "?";
}

int log_configure(const char *spec, const char *format)
{
	int def = LOG_INFO, nmod = 0, json = 0;
	char buf[512], *save = NULL, *tok;
	__typeof__(cfg.modules) mods;

	if (format && *format) {
		if (!strcmp(format, "json"))
			json = 1;
		else if (strcmp(format, "text"))
			return err_set(-EINVAL,
				       "DYN_LOG_FORMAT: '%s' is not text or json",
				       format);
	}
	if (spec) {
		if (strlen(spec) >= sizeof(buf))
			return err_set(-EINVAL, "DYN_LOG: too long");
		strcpy(buf, spec);
		for (tok = strtok_r(buf, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(tok, '=');
			int lvl = log_level_parse(eq ? eq + 1 : tok);
			if (lvl < 0)
				return err_set(-EINVAL,
					       "DYN_LOG: unknown level '%s' (use error, warn, info, debug or trace)",
					       eq ? eq + 1 : tok);
			if (!eq) {
				def = lvl;
				continue;
			}
			*eq = '\0';
			if (!*tok || strlen(tok) >= LOG_MODULE_NAME)
				return err_set(-EINVAL,
					       "DYN_LOG: bad module name '%s'", tok);
			if (nmod == LOG_MAX_MODULES)
				return err_set(-EINVAL, "DYN_LOG: too many modules");
			strcpy(mods[nmod].name, tok);
			mods[nmod++].level = lvl;
		}
	}
	cfg.default_level = def;
	cfg.json = json;
	cfg.nmodules = nmod;
	memcpy(cfg.modules, mods, sizeof(mods[0]) * (size_t)nmod);
	return 0;
}

void log_init(void)
{
	if (log_configure(getenv("DYN_LOG"), getenv("DYN_LOG_FORMAT")) < 0)
		fprintf(stderr, "dyn: warning: %s; using defaults\n", err_msg());
}

int log_enabled(enum log_level lvl, const char *module)
{
	for (int i = 0; i < cfg.nmodules; i++)
		if (!strcmp(cfg.modules[i].name, module))
			return (int)lvl <= cfg.modules[i].level;
	return (int)lvl <= cfg.default_level;
}

void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
{
	struct strbuf msg = STRBUF_INIT, line = STRBUF_INIT;
	struct timespec ts;
	struct tm tm;
	char when[32];
	va_list ap;

	va_start(ap, fmt);
	sb_vaddf(&msg, fmt, ap);
	va_end(ap);

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

	if (cfg.json) {
		sb_addf(&line, "{\"time\":\"%s.%06ldZ\",\"level\":\"%s\",\"module\":",
			when, ts.tv_nsec / 1000, log_level_name(lvl));
		sb_add_json_str(&line, module, strlen(module));
		sb_addf(&line, ",\"pid\":%d,\"msg\":", (int)getpid());
		sb_add_json_str(&line, msg.buf, msg.len);
		sb_adds(&line, "}\n");
	} else {
		sb_addf(&line, "%s.%03ldZ %-5s %s: %s\n", when,
			ts.tv_nsec / 1000000, log_level_name(lvl), module,
			msg.buf);
	}
	/* One write per line keeps concurrent writers from interleaving. */
	ssize_t off = 0;
	while ((size_t)off < line.len) {
		ssize_t n = write(STDERR_FILENO, line.buf + off, line.len - (size_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += n;
	}
	sb_release(&msg);
	sb_release(&line);
}
