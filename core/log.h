/*
 * log.h - leveled, per-module logging to stderr.
 *
 * Configuration comes from the environment (read by log_init()):
 *   DYN_LOG=LEVEL[,MODULE=LEVEL...]   levels: error warn info debug trace
 *                                     (order-free: "router=debug,info")
 *   DYN_LOG_FORMAT=text|json          json: one object per line with
 *                                     time, level, module, pid, msg
 * Default level is info.  Use the macros: LOG_INFO("store", "opened %s", p).
 * Thread-safe: one write(2) per line, so lines from threads and from
 * processes sharing a terminal never interleave.
 */
#ifndef DYN_LOG_H
#define DYN_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* Parse a DYN_LOG-style spec; returns 0 or a negative code (err.h). */
int log_configure(const char *spec, const char *format);
/* Configure from DYN_LOG / DYN_LOG_FORMAT; a bad spec is reported and
 * ignored (logging must never stop a program). */
void log_init(void);

int log_enabled(enum log_level lvl, const char *module);
void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Parse "info" etc.; returns level or -1. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level lvl);

#define LOG_AT(lvl, mod, ...)                                  \
	do {                                                   \
		if (log_enabled((lvl), (mod)))                 \
			log_write((lvl), (mod), __VA_ARGS__);  \
	} while (0)
#define LOG_ERROR(mod, ...) LOG_AT(LOG_ERROR, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...)  LOG_AT(LOG_WARN, mod, __VA_ARGS__)
#define LOG_INFO(mod, ...)  LOG_AT(LOG_INFO, mod, __VA_ARGS__)
#define LOG_DEBUG(mod, ...) LOG_AT(LOG_DEBUG, mod, __VA_ARGS__)
#define LOG_TRACE(mod, ...) LOG_AT(LOG_TRACE, mod, __VA_ARGS__)

#endif
