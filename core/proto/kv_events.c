/*
 * kv_events.c - the KV event codec (kv_events.h).
 *
 * Two wire forms.  The JSON decoder is a small strict reader of its own
 * rather than cJSON: hashes are full 64-bit unsigned integers, which
 * cJSON would round through double.  It accepts RFC 8259 JSON, skips
 * unknown members of any shape (bounded nesting), and reads the known
 * ones with their types.  The binary decoder makes two passes: the first
 * checks the whole structure against the bytes there (no count is
 * believed before that) and totals the hashes, the second fills one
 * allocation holding the events and all their arrays.  Measured
 * (router_bench, 16-block stored events, medians of 5 runs): JSON 72
 * bytes a block, decode alone 0.6M events/s; binary 16.9 bytes a block,
 * decode alone 20-27M events/s, so that decode + apply goes from 0.28M
 * (JSON, 7ddf1f6) to 0.77M events/s and the index's inserts are now what
 * costs.
 */
#include "core/proto/kv_events.h"

#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- reader -------------------------------------------------------- */

struct jr {
	const char *p, *e;
	int depth;
	const char *what;	/* the member being read, for messages */
};

static int jfail(struct jr *j, const char *msg)
{
	return err_set(-EINVAL, "kv event: %s%s%s", msg, j->what ? " in " : "",
		       j->what ? j->what : "");
}

static void jws(struct jr *j)
{
	while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

/* Consume c (after whitespace); 1 if it was there. */
static int jeat(struct jr *j, char c)
{
	jws(j);
	if (j->p < j->e && *j->p == c) {
		j->p++;
		return 1;
	}
	return 0;
}

static int jpeek(struct jr *j)
{
	jws(j);
	return j->p < j->e ? (unsigned char)*j->p : -1;
}

/* A string; s, n: its raw contents between the quotes (escapes not
 * decoded: member names we know have none). */
static int jstring(struct jr *j, const char **s, size_t *n)
{
	if (!jeat(j, '"'))
		return jfail(j, "expected a string");
	const char *start = j->p;
	while (j->p < j->e) {
		unsigned char c = (unsigned char)*j->p;
		if (c == '"') {
			*s = start;
			*n = (size_t)(j->p - start);
			j->p++;
			return 0;
		}
		if (c < 0x20)
			return jfail(j, "control character in a string");
		if (c == '\\') {
			j->p++;
			if (j->p >= j->e)
				break;
			c = (unsigned char)*j->p;
			if (c == 'u') {
				if (j->e - j->p < 5)
					return jfail(j, "truncated \\u escape");
				for (int k = 1; k <= 4; k++)
					if (hex_digit(j->p[k]) < 0)
						return jfail(j, "bad \\u escape");
				j->p += 4;
			} else if (!strchr("\"\\/bfnrt", c)) {
				return jfail(j, "bad escape in a string");
			}
		}
		j->p++;
	}
	return jfail(j, "unterminated string");
}

static int jliteral(struct jr *j, const char *lit)
{
	size_t n = strlen(lit);
	jws(j);
	if ((size_t)(j->e - j->p) < n || memcmp(j->p, lit, n))
		return jfail(j, "bad literal");
	j->p += n;
	return 0;
}

/* Any JSON number (for skipping). */
static int jnumber_skip(struct jr *j)
{
	jws(j);
	const char *p = j->p;
	if (p < j->e && *p == '-')
		p++;
	if (p >= j->e || *p < '0' || *p > '9')
		return jfail(j, "bad number");
	if (*p == '0')
		p++;
	else
		while (p < j->e && *p >= '0' && *p <= '9')
			p++;
	if (p < j->e && *p == '.') {
		p++;
		if (p >= j->e || *p < '0' || *p > '9')
			return jfail(j, "bad number");
		while (p < j->e && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < j->e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < j->e && (*p == '+' || *p == '-'))
			p++;
		if (p >= j->e || *p < '0' || *p > '9')
			return jfail(j, "bad number");
		while (p < j->e && *p >= '0' && *p <= '9')
			p++;
	}
	j->p = p;
	return 0;
}

static int jskip(struct jr *j);

static int jskip_container(struct jr *j, char open, char close)
{
	if (++j->depth > KV_JSON_MAX_DEPTH)
		return jfail(j, "nested too deeply");
	j->p++;	/* open */
	(void)open;
	if (jeat(j, close)) {
		j->depth--;
		return 0;
	}
	for (;;) {
		int rc;
		if (close == '}') {
			const char *s;
			size_t n;
			if ((rc = jstring(j, &s, &n)) < 0)
				return rc;
			if (!jeat(j, ':'))
				return jfail(j, "expected ':'");
		}
		if ((rc = jskip(j)) < 0)
			return rc;
		if (jeat(j, ','))
			continue;
		if (jeat(j, close))
			break;
		return jfail(j, "expected ',' or a closing bracket");
	}
	j->depth--;
	return 0;
}

static int jskip(struct jr *j)
{
	const char *s;
	size_t n;
	switch (jpeek(j)) {
	case '{':
		return jskip_container(j, '{', '}');
	case '[':
		return jskip_container(j, '[', ']');
	case '"':
		return jstring(j, &s, &n);
	case 't':
		return jliteral(j, "true");
	case 'f':
		return jliteral(j, "false");
	case 'n':
		return jliteral(j, "null");
	case -1:
		return jfail(j, "unexpected end");
	default:
		return jnumber_skip(j);
	}
}

/* An unsigned 64-bit integer, exactly (no sign, fraction or exponent). */
static int ju64(struct jr *j, uint64_t *out)
{
	jws(j);
	const char *p = j->p;
	uint64_t v = 0;
	if (p >= j->e || *p < '0' || *p > '9')
		return jfail(j, "expected an unsigned integer");
	if (*p == '0' && p + 1 < j->e && p[1] >= '0' && p[1] <= '9')
		return jfail(j, "leading zero");
	while (p < j->e && *p >= '0' && *p <= '9') {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return jfail(j, "integer out of range");
		v = v * 10 + d;
		p++;
	}
	if (p < j->e && (*p == '.' || *p == 'e' || *p == 'E'))
		return jfail(j, "expected an integer");
	j->p = p;
	*out = v;
	return 0;
}

static int ji64(struct jr *j, int64_t *out)
{
	int neg = jeat(j, '-');
	uint64_t v;
	int rc = ju64(j, &v);
	if (rc < 0)
		return rc;
	if (v > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return jfail(j, "integer out of range");
	/* INT64_MIN too (the binary form carries any i64) */
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/*
 * Iterate an object's members: calls fn(j, key, keylen, arg) with the
 * reader on the value, which fn must consume (or return 1 to have it
 * skipped).
 */
typedef int (*jmember_fn)(struct jr *j, const char *k, size_t kn, void *arg);

static int jobject(struct jr *j, jmember_fn fn, void *arg)
{
	int rc;
	if (!jeat(j, '{'))
		return jfail(j, "expected an object");
	if (++j->depth > KV_JSON_MAX_DEPTH)
		return jfail(j, "nested too deeply");
	if (jeat(j, '}')) {
		j->depth--;
		return 0;
	}
	for (;;) {
		const char *k;
		size_t kn;
		if ((rc = jstring(j, &k, &kn)) < 0)
			return rc;
		if (!jeat(j, ':'))
			return jfail(j, "expected ':'");
		rc = fn(j, k, kn, arg);
		if (rc < 0)
			return rc;
		if (rc > 0 && (rc = jskip(j)) < 0)
			return rc;
		if (jeat(j, ','))
			continue;
		if (jeat(j, '}'))
			break;
		return jfail(j, "expected ',' or '}'");
	}
	j->depth--;
	return 0;
}

/* Iterate an array: fn(j, arg) consumes one element. */
typedef int (*jelem_fn)(struct jr *j, void *arg);

static int jarray(struct jr *j, jelem_fn fn, void *arg)
{
	int rc;
	if (!jeat(j, '['))
		return jfail(j, "expected an array");
	if (++j->depth > KV_JSON_MAX_DEPTH)
		return jfail(j, "nested too deeply");
	if (jeat(j, ']')) {
		j->depth--;
		return 0;
	}
	for (;;) {
		if ((rc = fn(j, arg)) < 0)
			return rc;
		if (jeat(j, ','))
			continue;
		if (jeat(j, ']'))
			break;
		return jfail(j, "expected ',' or ']'");
	}
	j->depth--;
	return 0;
}

static int key_is(const char *k, size_t kn, const char *name)
{
	return strlen(name) == kn && memcmp(k, name, kn) == 0;
}

/* ---- message structure --------------------------------------------- */

struct ev_ctx {
	struct kv_event *ev;
	size_t alloc;
	int seen;	/* bit flags of members seen */
};

static int block_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct ev_ctx *c = arg;
	struct block_hash_pair *b = &c->ev->blocks[c->ev->n];
	if (key_is(k, kn, "seq_hash")) {
		if (c->seen & 1)
			return jfail(j, "duplicate seq_hash");
		c->seen |= 1;
		return ju64(j, &b->seq_hash);
	}
	if (key_is(k, kn, "local_hash")) {
		if (c->seen & 2)
			return jfail(j, "duplicate local_hash");
		c->seen |= 2;
		return ju64(j, &b->local_hash);
	}
	return 1;
}

static int block_elem(struct jr *j, void *arg)
{
	struct ev_ctx *c = arg;
	if (c->ev->n == c->alloc) {
		c->alloc = c->alloc ? c->alloc * 2 : 8;
		c->ev->blocks = xrealloc(c->ev->blocks, c->alloc * sizeof(*c->ev->blocks));
	}
	c->ev->blocks[c->ev->n] = (struct block_hash_pair){ 0, 0 };
	c->seen = 0;
	int rc = jobject(j, block_member, c);
	if (rc < 0)
		return rc;
	if (!(c->seen & 1))
		return jfail(j, "block without seq_hash");
	c->ev->n++;
	return 0;
}

static int hash_elem(struct jr *j, void *arg)
{
	struct ev_ctx *c = arg;
	if (c->ev->n == c->alloc) {
		c->alloc = c->alloc ? c->alloc * 2 : 8;
		c->ev->hashes = xrealloc(c->ev->hashes, c->alloc * sizeof(*c->ev->hashes));
	}
	int rc = ju64(j, &c->ev->hashes[c->ev->n]);
	if (rc < 0)
		return rc;
	c->ev->n++;
	return 0;
}

struct body_ctx {
	struct kv_event *ev;
	int seen;
};

/* "medium":"G1".."G4" (stored and removed bodies). */
static int jmedium(struct jr *j, struct body_ctx *b)
{
	const char *s;
	size_t n;
	if (b->seen & 4)
		return jfail(j, "duplicate medium");
	b->seen |= 4;
	if (jstring(j, &s, &n) < 0)
		return -EINVAL;
	if (n != 2 || s[0] != 'G' || s[1] < '1' || s[1] > '0' + KV_MEDIUM_MAX)
		return jfail(j, "medium must be \"G1\" .. \"G4\"");
	b->ev->medium = s[1] - '0';
	return 0;
}

static int stored_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct body_ctx *b = arg;
	if (key_is(k, kn, "medium"))
		return jmedium(j, b);
	if (key_is(k, kn, "parent_hash")) {
		if (b->seen & 1)
			return jfail(j, "duplicate parent_hash");
		b->seen |= 1;
		if (jpeek(j) == 'n') {
			b->ev->has_parent = 0;
			return jliteral(j, "null");
		}
		b->ev->has_parent = 1;
		return ju64(j, &b->ev->parent_hash);
	}
	if (key_is(k, kn, "blocks")) {
		if (b->seen & 2)
			return jfail(j, "duplicate blocks");
		b->seen |= 2;
		struct ev_ctx c = { b->ev, 0, 0 };
		j->what = "stored.blocks";
		return jarray(j, block_elem, &c);
	}
	return 1;
}

static int removed_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct body_ctx *b = arg;
	if (key_is(k, kn, "medium"))
		return jmedium(j, b);
	if (key_is(k, kn, "seq_hashes")) {
		if (b->seen & 1)
			return jfail(j, "duplicate seq_hashes");
		b->seen |= 1;
		struct ev_ctx c = { b->ev, 0, 0 };
		j->what = "removed.seq_hashes";
		return jarray(j, hash_elem, &c);
	}
	return 1;
}

/* A stored body into ev (kind set). */
static int parse_stored(struct jr *j, struct kv_event *ev)
{
	struct body_ctx b = { ev, 0 };
	ev->kind = KV_EV_STORED;
	int rc = jobject(j, stored_member, &b);
	if (rc < 0)
		return rc;
	if (!(b.seen & 2))
		return jfail(j, "stored event without blocks");
	return 0;
}

struct event_ctx {
	struct kv_event *ev;
	int seen;	/* 1 event_id, 2 body */
};

static int event_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct event_ctx *c = arg;
	int rc;
	if (key_is(k, kn, "event_id")) {
		if (c->seen & 1)
			return jfail(j, "duplicate event_id");
		c->seen |= 1;
		return ju64(j, &c->ev->event_id);
	}
	int body = key_is(k, kn, "stored") ? KV_EV_STORED
		 : key_is(k, kn, "removed") ? KV_EV_REMOVED
		 : key_is(k, kn, "cleared") ? KV_EV_CLEARED : 0;
	if (!body)
		return 1;
	if (c->seen & 2)
		return jfail(j, "event with more than one of stored/removed/cleared");
	c->seen |= 2;
	c->ev->kind = (enum kv_event_kind)body;
	if (body == KV_EV_STORED)
		return parse_stored(j, c->ev);
	if (body == KV_EV_REMOVED) {
		struct body_ctx b = { c->ev, 0 };
		if ((rc = jobject(j, removed_member, &b)) < 0)
			return rc;
		if (!(b.seen & 1))
			return jfail(j, "removed event without seq_hashes");
		return 0;
	}
	/* cleared: {} or null (anything inside is ignored) */
	if (jpeek(j) == 'n')
		return jliteral(j, "null");
	if (jpeek(j) != '{')
		return jfail(j, "cleared must be an object");
	return jskip(j);
}

struct msg_ctx {
	struct kv_msg *m;
	size_t alloc;
	int seen;	/* 1 events, 2 load, 4 dump */
	int dseen;	/* dump: 1 last_event_id, 2 stored */
	int lseen;
};

static struct kv_event *msg_new_event(struct msg_ctx *c)
{
	if (c->m->n_events == c->alloc) {
		c->alloc = c->alloc ? c->alloc * 2 : 8;
		c->m->events = xrealloc(c->m->events, c->alloc * sizeof(*c->m->events));
	}
	struct kv_event *ev = &c->m->events[c->m->n_events++];
	memset(ev, 0, sizeof(*ev));
	return ev;
}

static int event_elem(struct jr *j, void *arg)
{
	struct msg_ctx *c = arg;
	struct event_ctx e = { msg_new_event(c), 0 };
	j->what = "events";
	int rc = jobject(j, event_member, &e);
	if (rc < 0)
		return rc;
	j->what = "events";
	if (!(e.seen & 1))
		return jfail(j, "event without event_id");
	if (!(e.seen & 2))
		return jfail(j, "event without stored, removed or cleared");
	return 0;
}

static int dump_group_elem(struct jr *j, void *arg)
{
	struct msg_ctx *c = arg;
	return parse_stored(j, msg_new_event(c));
}

static int dump_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct msg_ctx *c = arg;
	if (key_is(k, kn, "last_event_id")) {
		if (c->dseen & 1)
			return jfail(j, "duplicate last_event_id");
		c->dseen |= 1;
		return ju64(j, &c->m->dump_last_id);
	}
	if (key_is(k, kn, "stored")) {
		if (c->dseen & 2)
			return jfail(j, "duplicate stored");
		c->dseen |= 2;
		j->what = "dump.stored";
		return jarray(j, dump_group_elem, c);
	}
	return 1;
}

static int load_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct msg_ctx *c = arg;
	static const char *const names[] = { "active_blocks", "total_blocks", "waiting",
					     "queued_prefill_tokens" };
	int64_t *fields[] = { &c->m->load.active_blocks, &c->m->load.total_blocks,
			      &c->m->load.waiting, &c->m->load.queued_prefill_tokens };
	for (int i = 0; i < 4; i++) {
		if (key_is(k, kn, names[i])) {
			if (c->lseen & (1 << i))
				return jfail(j, "duplicate load member");
			c->lseen |= 1 << i;
			return ji64(j, fields[i]);
		}
	}
	return 1;
}

static int msg_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct msg_ctx *c = arg;
	int bit = key_is(k, kn, "events") ? 1 : key_is(k, kn, "load") ? 2
		: key_is(k, kn, "dump") ? 4 : 0;
	if (!bit)
		return 1;
	if (c->seen & bit)
		return jfail(j, "duplicate member");
	c->seen |= bit;
	if ((c->seen & 5) == 5)
		return jfail(j, "events and dump in one message");
	if (bit == 1)
		return jarray(j, event_elem, c);
	if (bit == 2) {
		j->what = "load";
		c->m->has_load = 1;
		return jobject(j, load_member, c);
	}
	j->what = "dump";
	c->m->is_dump = 1;
	int rc = jobject(j, dump_member, c);
	if (rc < 0)
		return rc;
	if (!(c->dseen & 1))
		return jfail(j, "dump without last_event_id");
	return 0;
}

void kv_msg_release(struct kv_msg *m)
{
	if (m->mem) {
		free(m->mem);	/* events and their arrays live in it */
	} else {
		for (size_t i = 0; i < m->n_events; i++) {
			free(m->events[i].blocks);
			free(m->events[i].hashes);
		}
		free(m->events);
	}
	memset(m, 0, sizeof(*m));
}

static int kv_msg_decode_json(const char *json, size_t len, struct kv_msg *out)
{
	struct jr j = { json, json + len, 0, NULL };
	struct msg_ctx c = { out, 0, 0, 0, 0 };
	int rc = jobject(&j, msg_member, &c);
	if (rc == 0) {
		jws(&j);
		if (j.p != j.e)
			rc = err_set(-EINVAL, "kv event: trailing data after the message");
	}
	if (rc < 0)
		kv_msg_release(out);
	return rc;
}

/* ---- binary form (kv_events.h, "Binary form") ---------------------- */

static inline uint64_t ld64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline void st64(unsigned char *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

/* A cursor over the input; every read checks the bytes left. */
struct br {
	const unsigned char *p, *e;
};

static int bfail(const struct br *b, const unsigned char *start, const char *msg)
{
	return err_set(-EINVAL, "kv event: binary message: %s at byte %zu", msg,
		       (size_t)(b->p - start));
}

/* LEB128, at most 10 bytes, minimal (no redundant high zero groups). */
static int bvarint(struct br *b, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned i = 0, shift = 0; i < 10; i++, shift += 7) {
		if (b->p >= b->e)
			return -1;
		unsigned c = *b->p++;
		if (i == 9 && c > 1)
			return -1;	/* more than 64 bits */
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			if (i && !c)
				return -1;	/* overlong */
			*out = v;
			return 0;
		}
	}
	return -1;
}

/*
 * One event (or dump group) header: the tag, the id (events only), the
 * parent and the item count, checked against the bytes left.  Leaves
 * b->p on the items.
 */
static int bevent_head(struct br *b, const unsigned char *start, int dump,
		       struct kv_event *ev, size_t *item_size)
{
	if (b->p >= b->e)
		return bfail(b, start, "truncated event");
	unsigned tag = *b->p++;
	unsigned kind = tag & KV_BIN_KIND_MASK;
	if ((tag & ~(KV_BIN_KIND_MASK | KV_BIN_HAS_PARENT | KV_BIN_MEDIUM_MASK)) ||
	    kind < KV_EV_STORED || kind > KV_EV_CLEARED ||
	    ((tag & KV_BIN_HAS_PARENT) && kind != KV_EV_STORED) ||
	    ((tag & KV_BIN_MEDIUM_MASK) && kind == KV_EV_CLEARED))
		return bfail(b, start, "bad event tag");
	ev->medium = (int)((tag & KV_BIN_MEDIUM_MASK) >> KV_BIN_MEDIUM_SHIFT) + 1;
	if (dump && kind != KV_EV_STORED)
		return bfail(b, start, "a dump holds stored groups only");
	ev->kind = (enum kv_event_kind)kind;
	ev->event_id = 0;
	if (!dump && bvarint(b, &ev->event_id) < 0)
		return bfail(b, start, "bad or truncated event id");
	ev->has_parent = 0;
	ev->parent_hash = 0;
	ev->n = 0;
	*item_size = 0;
	if (kind == KV_EV_CLEARED)
		return 0;
	if (tag & KV_BIN_HAS_PARENT) {
		if (b->e - b->p < 8)
			return bfail(b, start, "truncated parent hash");
		ev->has_parent = 1;
		ev->parent_hash = ld64(b->p);
		b->p += 8;
	}
	uint64_t n;
	if (bvarint(b, &n) < 0)
		return bfail(b, start, "bad or truncated count");
	*item_size = kind == KV_EV_STORED ? 16 : 8;
	if (n > (uint64_t)(b->e - b->p) / *item_size)
		return bfail(b, start, "count larger than the message");
	ev->n = (size_t)n;
	return 0;
}

static int kv_msg_decode_binary(const unsigned char *in, size_t len, struct kv_msg *out)
{
	struct br b = { in, in + len };
	if (len < KV_BIN_HEADER)
		return bfail(&b, in, "truncated header");
	if (in[4] != KV_BIN_VERSION)
		return err_set(-EINVAL, "kv event: binary message version %u not supported "
			       "(this build reads %u)", in[4], KV_BIN_VERSION);
	unsigned flags = in[5];
	if (flags & ~(KV_BIN_F_LOAD | KV_BIN_F_DUMP))
		return err_set(-EINVAL, "kv event: binary message: unknown flags 0x%02x", flags);
	b.p += KV_BIN_HEADER;
	if (flags & KV_BIN_F_LOAD) {
		if (b.e - b.p < 32)
			return bfail(&b, in, "truncated load");
		out->has_load = 1;
		out->load.active_blocks = (int64_t)ld64(b.p);
		out->load.total_blocks = (int64_t)ld64(b.p + 8);
		out->load.waiting = (int64_t)ld64(b.p + 16);
		out->load.queued_prefill_tokens = (int64_t)ld64(b.p + 24);
		b.p += 32;
	}
	int dump = !!(flags & KV_BIN_F_DUMP);
	if (dump) {
		if (b.e - b.p < 8)
			return bfail(&b, in, "truncated dump id");
		out->is_dump = 1;
		out->dump_last_id = ld64(b.p);
		b.p += 8;
	}
	uint64_t n_ev;
	if (bvarint(&b, &n_ev) < 0)
		return bfail(&b, in, "bad or truncated event count");
	/* every event takes at least 2 bytes: a lying count fails here,
	 * before anything is allocated */
	if (n_ev > (uint64_t)(b.e - b.p) / 2 || n_ev > KV_MSG_MAX_EVENTS)
		return bfail(&b, in, "event count larger than the message or the limit");
	if (!n_ev) {
		if (b.p != b.e)
			return bfail(&b, in, "trailing data after the message");
		return 0;
	}

	/* pass 1: validate the structure, total the items */
	const unsigned char *body = b.p;
	size_t items = 0;
	for (uint64_t i = 0; i < n_ev; i++) {
		struct kv_event ev;
		size_t isz;
		int rc = bevent_head(&b, in, dump, &ev, &isz);
		if (rc < 0)
			return rc;
		b.p += ev.n * isz;
		items += ev.n * (isz / 8);
	}
	if (b.p != b.e)
		return bfail(&b, in, "trailing data after the message");

	/* pass 2: one allocation for the events and all their hashes */
	size_t ev_bytes = (size_t)n_ev * sizeof(struct kv_event);
	ev_bytes = (ev_bytes + 15) & ~(size_t)15;
	char *mem = xmalloc(ev_bytes + items * 8);
	uint64_t *u = (uint64_t *)(void *)(mem + ev_bytes);
	out->mem = mem;
	out->events = (struct kv_event *)(void *)mem;
	out->n_events = (size_t)n_ev;
	b.p = body;
	for (size_t i = 0; i < out->n_events; i++) {
		struct kv_event *ev = &out->events[i];
		size_t isz;
		(void)bevent_head(&b, in, dump, ev, &isz);	/* validated above */
		ev->blocks = NULL;
		ev->hashes = NULL;
		if (ev->kind == KV_EV_STORED) {
			ev->blocks = (struct block_hash_pair *)(void *)u;
			for (size_t k = 0; k < ev->n; k++) {
				ev->blocks[k].seq_hash = ld64(b.p);
				ev->blocks[k].local_hash = ld64(b.p + 8);
				b.p += 16;
			}
			u += 2 * ev->n;
		} else if (ev->kind == KV_EV_REMOVED) {
			ev->hashes = u;
			for (size_t k = 0; k < ev->n; k++, b.p += 8)
				ev->hashes[k] = ld64(b.p);
			u += ev->n;
		}
	}
	return 0;
}

int kv_msg_is_binary(const void *data, size_t len)
{
	static const unsigned char magic[4] = { KV_BIN_MAGIC };
	return len >= 4 && memcmp(data, magic, 4) == 0;
}

int kv_msg_decode(const char *data, size_t len, struct kv_msg *out)
{
	memset(out, 0, sizeof(*out));
	/* JSON text never starts with a NUL byte: the binary form does */
	int rc = len && data[0] == 0
		 ? (kv_msg_is_binary(data, len)
			    ? kv_msg_decode_binary((const unsigned char *)data, len, out)
			    : err_set(-EINVAL, "kv event: not a binary KV message (bad magic)"))
		 : kv_msg_decode_json(data, len, out);
	if (rc < 0)
		kv_msg_release(out);
	return rc;
}

struct wire_ctx {
	int wire;	/* -1: not given */
};

static int wire_member(struct jr *j, const char *k, size_t kn, void *arg)
{
	struct wire_ctx *c = arg;
	const char *v;
	size_t vn;
	if (!key_is(k, kn, "wire") || jpeek(j) != '"')
		return 1;
	int rc = jstring(j, &v, &vn);
	if (rc < 0)
		return rc;
	c->wire = key_is(v, vn, "binary") ? KV_WIRE_BINARY
		: key_is(v, vn, "json") ? KV_WIRE_JSON : c->wire;
	return 0;
}

enum kv_wire kv_wire_requested(const void *req, size_t len, enum kv_wire dflt)
{
	struct jr j = { req, (const char *)req + len, 0, NULL };
	struct wire_ctx c = { -1 };
	if (!len || jobject(&j, wire_member, &c) < 0 || c.wire < 0)
		return dflt;
	return (enum kv_wire)c.wire;
}

/* Room for k more bytes; returns where they go (committed by bcommit). */
static unsigned char *bspace(struct strbuf *sb, size_t k)
{
	sb_grow(sb, k);
	return (unsigned char *)sb->buf + sb->len;
}

static void bcommit(struct strbuf *sb, unsigned char *end)
{
	sb->len = (size_t)((char *)end - sb->buf);
	sb->buf[sb->len] = '\0';
}

static unsigned char *pvarint(unsigned char *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	*p++ = (unsigned char)v;
	return p;
}

static void benc_header(struct strbuf *sb, int dump, const struct kv_load *load,
			uint64_t last_id, size_t n)
{
	unsigned char *p = bspace(sb, KV_BIN_HEADER + 32 + 8 + 10);
	static const unsigned char magic[4] = { KV_BIN_MAGIC };
	memcpy(p, magic, 4);
	p[4] = KV_BIN_VERSION;
	p[5] = (unsigned char)((load ? KV_BIN_F_LOAD : 0) | (dump ? KV_BIN_F_DUMP : 0));
	p += KV_BIN_HEADER;
	if (load) {
		st64(p, (uint64_t)load->active_blocks);
		st64(p + 8, (uint64_t)load->total_blocks);
		st64(p + 16, (uint64_t)load->waiting);
		st64(p + 24, (uint64_t)load->queued_prefill_tokens);
		p += 32;
	}
	if (dump) {
		st64(p, last_id);
		p += 8;
	}
	bcommit(sb, pvarint(p, n));
}

/* One event (dump: a group, without id); e->kind must be valid. */
static void benc_event(struct strbuf *sb, const struct kv_event *e, int dump)
{
	size_t isz = e->kind == KV_EV_STORED ? 16 : e->kind == KV_EV_REMOVED ? 8 : 0;
	unsigned char *p = bspace(sb, 1 + 10 + 8 + 10 + e->n * isz);
	int parent = e->kind == KV_EV_STORED && e->has_parent;
	int med = e->kind != KV_EV_CLEARED && e->medium > 1 ? e->medium - 1 : 0;
	*p++ = (unsigned char)(e->kind | (parent ? KV_BIN_HAS_PARENT : 0) |
			       (unsigned)med << KV_BIN_MEDIUM_SHIFT);
	if (!dump)
		p = pvarint(p, e->event_id);
	if (parent) {
		st64(p, e->parent_hash);
		p += 8;
	}
	if (e->kind == KV_EV_STORED) {
		p = pvarint(p, e->n);
		for (size_t k = 0; k < e->n; k++, p += 16) {
			st64(p, e->blocks[k].seq_hash);
			st64(p + 8, e->blocks[k].local_hash);
		}
	} else if (e->kind == KV_EV_REMOVED) {
		p = pvarint(p, e->n);
		for (size_t k = 0; k < e->n; k++, p += 8)
			st64(p, e->hashes[k]);
	}
	bcommit(sb, p);
}

static void encode_binary(const struct kv_msg *m, struct strbuf *out)
{
	benc_header(out, m->is_dump, m->has_load ? &m->load : NULL, m->dump_last_id,
		    m->n_events);
	for (size_t i = 0; i < m->n_events; i++) {
		struct kv_event e = m->events[i];
		/* as the JSON encoder reads kinds */
		if (m->is_dump)
			e.kind = KV_EV_STORED;
		else if (e.kind != KV_EV_STORED && e.kind != KV_EV_REMOVED)
			e.kind = KV_EV_CLEARED;
		benc_event(out, &e, m->is_dump);
	}
}


/* ---- encoder ------------------------------------------------------- */

/* "medium":"Gn", only below G1 (an event without one is G1). */
static void enc_medium(struct strbuf *sb, const struct kv_event *e)
{
	if (e->medium > 1)
		sb_addf(sb, "\"medium\":\"G%d\",", e->medium);
}

static void enc_stored(struct strbuf *sb, const struct kv_event *e)
{
	sb_addch(sb, '{');
	enc_medium(sb, e);
	if (e->has_parent)
		sb_addf(sb, "\"parent_hash\":%" PRIu64 ",\"blocks\":[", e->parent_hash);
	else
		sb_adds(sb, "\"parent_hash\":null,\"blocks\":[");
	for (size_t i = 0; i < e->n; i++)
		sb_addf(sb, "%s{\"seq_hash\":%" PRIu64 ",\"local_hash\":%" PRIu64 "}", i ? "," : "",
			e->blocks[i].seq_hash, e->blocks[i].local_hash);
	sb_adds(sb, "]}");
}

static void enc_event(struct strbuf *sb, const struct kv_event *e)
{
	sb_addf(sb, "{\"event_id\":%" PRIu64 ",", e->event_id);
	switch (e->kind) {
	case KV_EV_STORED:
		sb_adds(sb, "\"stored\":");
		enc_stored(sb, e);
		break;
	case KV_EV_REMOVED:
		sb_adds(sb, "\"removed\":{");
		enc_medium(sb, e);
		sb_adds(sb, "\"seq_hashes\":[");
		for (size_t i = 0; i < e->n; i++)
			sb_addf(sb, "%s%" PRIu64, i ? "," : "", e->hashes[i]);
		sb_adds(sb, "]}");
		break;
	default:
		sb_adds(sb, "\"cleared\":{}");
		break;
	}
	sb_addch(sb, '}');
}

static void enc_load(struct strbuf *sb, const struct kv_load *l)
{
	sb_addf(sb, "\"load\":{\"active_blocks\":%" PRId64 ",\"total_blocks\":%" PRId64
		",\"waiting\":%" PRId64 ",\"queued_prefill_tokens\":%" PRId64 "}",
		l->active_blocks, l->total_blocks, l->waiting, l->queued_prefill_tokens);
}

static void encode_json(const struct kv_msg *m, struct strbuf *out)
{
	sb_addch(out, '{');
	if (m->is_dump) {
		sb_addf(out, "\"dump\":{\"last_event_id\":%" PRIu64 ",\"stored\":[", m->dump_last_id);
		for (size_t i = 0; i < m->n_events; i++) {
			if (i)
				sb_addch(out, ',');
			enc_stored(out, &m->events[i]);
		}
		sb_adds(out, "]}");
	} else {
		sb_adds(out, "\"events\":[");
		for (size_t i = 0; i < m->n_events; i++) {
			if (i)
				sb_addch(out, ',');
			enc_event(out, &m->events[i]);
		}
		sb_addch(out, ']');
	}
	if (m->has_load) {
		sb_addch(out, ',');
		enc_load(out, &m->load);
	}
	sb_addch(out, '}');
}

void kv_msg_encode(const struct kv_msg *m, enum kv_wire wire, struct strbuf *out)
{
	if (wire == KV_WIRE_JSON)
		encode_json(m, out);
	else
		encode_binary(m, out);
}
