/*
 * internal.h - what parse.c (the streaming framework, reasoning, harmony)
 * and toolfmt.c (the tool-call formats) share.  Not a public API.
 */
#ifndef DYN_PARSE_INTERNAL_H
#define DYN_PARSE_INTERNAL_H

#include "core/parse/parse.h"

#include <cjson/cJSON.h>
#include <stddef.h>

/* What a format's scan says about the text from a start marker on. */
enum scan_rc {
	SCAN_NEED,	/* undecided: more text is needed */
	SCAN_OK,	/* *used bytes are calls (appended to the events) */
	SCAN_BAD,	/* not a call: *used bytes (the marker) are content */
};

/*
 * A tool-call format: its start markers, its markup, whether a call may also start
 * bare ('{' / '[' before any content), and its scan.  scan gets s[0..n)
 * starting at a start marker (or the bare character); final: no more
 * text comes.
 */
struct tool_fmt {
	const char *const *starts;
	char bare;			/* 0: none */
	const char *const *marks;	/* all its markup (parse_keeps_special) */
	enum scan_rc (*scan)(const cJSON *tools, const char *s, size_t n, int final, size_t *used,
			     struct parse_evs *calls);
};
extern const struct tool_fmt *const tool_fmts[PARSE_TOOL_N];

/* ---- helpers (parse.c) ---- */

/* Append an event (text copied; merged into the last one of its kind). */
void ev_text(struct parse_evs *e, enum parse_ev_kind kind, const char *s, size_t n);
/* Append a call (name, args and id copied; id may be NULL). */
void ev_call(struct parse_evs *e, const char *name, size_t nlen, const char *args,
	     const char *id);
/* Is s[0..n) a function name a call can carry (not empty, no whitespace
 * or control characters)? */
int name_ok(const char *s, size_t n);
/* Move the events of from to the end of to. */
void ev_move(struct parse_evs *to, struct parse_evs *from);

/* Position of needle in s[0..n) at or after from, or -1. */
long find(const char *s, size_t n, size_t from, const char *needle);
/* Does s[0..n) start with p? (n may be shorter than p: then 0.) */
int starts_with(const char *s, size_t n, const char *p);
/* Is s[0..n), all of it, a proper prefix of p? */
int prefix_of(const char *s, size_t n, const char *p);
/* The longest tail of s[0..n) that is a proper prefix of one of marks. */
size_t held_tail(const char *s, size_t n, const char *const *marks);
size_t skip_ws(const char *s, size_t n, size_t i);
int is_ws(char c);

/* The end of the JSON value at s[i..n) (after whitespace): SCAN_OK with
 * *end past it, SCAN_NEED when it is not complete yet, SCAN_BAD when it is
 * not an object or array. */
enum scan_rc json_end(const char *s, size_t n, size_t i, size_t *end);
/* The JSON value that is all of s[0..n) (whitespace around it aside), or
 * NULL. */
cJSON *json_parse(const char *s, size_t n);
/* A call object {"name":..., "arguments"|"parameters": {...}} as a call
 * event; -1 when obj is not one. */
int json_call(const cJSON *obj, struct parse_evs *calls);
/* The arguments text of a call: objects printed compactly. */
char *args_text(const cJSON *args);

#endif
