/*
 * interp.c - the tree-walking evaluator: statements, expressions, scopes,
 * macros, loops and Python's operators, plus tmpl_render().
 *
 * Scoping follows what jinja2's compiler produces: {% set %} assigns in
 * the innermost scope; a for loop body gets a fresh scope each iteration
 * (so assignments never outlive an iteration or the loop); macros, call
 * blocks, {% set %}...{% endset %}, filter blocks, with and generation
 * blocks have their own scope; if does not.  Macros resolve free names in
 * the scope they were defined in, at call time.  Names not found in any
 * scope come from the render's variables, then from the globals.
 *
 * Bounds: every statement and expression costs a step (rt_step), and so
 * does every TMPL_WORK_BYTES_PER_STEP bytes that operations allocate, copy
 * (the arena counts those) or scan (rt_work), so an expression over long
 * data costs in proportion; the clock is read every few thousand steps
 * for the time limit; nested macro calls are limited and the C stack in
 * use is checked, so neither a loop nor recursion can run away; memory
 * and output are capped through the arena (see arena.c).
 */
#include "core/tmpl/internal.h"
#include "core/err.h"
#include "core/strbuf.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Steps between two readings of the clock for the time limit. */
#define CLOCK_CHECK_STEPS 4096

enum { EX_NORMAL, EX_BREAK, EX_CONTINUE };

static struct tv eval(struct rt *rt, struct scope *sc, const struct node *n);
static int exec_body(struct rt *rt, struct scope *sc, struct nlist body);

/* ---- errors and budget --------------------------------------------------- */

void rt_fail(struct rt *rt, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rt->err, sizeof(rt->err), fmt, ap);
	va_end(ap);
	if (!rt->err_code)
		rt->err_code = -EINVAL;
	longjmp(rt->jmp, 1);
}

static void abort_oom(void *ctx, size_t want)
{
	(void)ctx;
	(void)want;
	abort();
}

void rt_fail_undef(struct rt *rt, struct tv u)
{
	char buf[512];
	struct arena tmp;
	/* format into a small private arena: the render arena may be full */
	ar_init(&tmp, 0, abort_oom, NULL);
	struct abuf b;
	ab_init(&b, &tmp, 0);
	tv_undef_msg(&b, u);
	snprintf(buf, sizeof(buf), "%s", b.p ? b.p : "undefined value");
	ar_free_all(&tmp);
	rt_fail(rt, "%s", buf);
}

_Thread_local struct rt *rt_active;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rt_step(struct rt *rt)
{
	uint64_t spent = ++rt->steps + rt->ar.work / TMPL_WORK_BYTES_PER_STEP;
	if (spent > rt->max_steps) {
		rt->err_code = -E2BIG;
		rt_fail(rt, "template exceeded its step budget (%" PRIu64 " steps; work on long "
			"strings and lists counts in proportion to their size)", rt->max_steps);
	}
	if (spent >= rt->next_clock_check) {
		rt->next_clock_check = spent + CLOCK_CHECK_STEPS;
		if (now_ns() > rt->deadline_ns) {
			rt->err_code = -E2BIG;
			rt_fail(rt, "template took too long to render (limit %" PRIu64 " ms)",
				rt->max_time_ms);
		}
	}
	rt_stack_check(rt);
}

void rt_stack_check(struct rt *rt)
{
	/* the frame address, not a local's: sanitizers may move locals */
	const char *here = __builtin_frame_address(0);
	size_t used = rt->stack_base > here ? (size_t)(rt->stack_base - here)
					    : (size_t)(here - rt->stack_base);
	if (used > rt->max_stack) {
		rt->err_code = -E2BIG;
		rt_fail(rt, "template nested too deeply");
	}
}

static void rt_oom(void *ctx, size_t want)
{
	struct rt *rt = ctx;
	rt->err_code = -E2BIG;
	if (want == SIZE_MAX)
		rt_fail(rt, "template output too large (limit %zu bytes)", rt->max_output);
	rt_fail(rt, "template used too much memory (limit %zu bytes)", rt->ar.cap);
}

/* ---- scopes ------------------------------------------------------------- */

static struct scope *scope_new(struct rt *rt, struct scope *parent)
{
	struct scope *s = ar_alloc(&rt->ar, sizeof(*s));
	s->parent = parent;
	return s;
}

/* A per-iteration scope: the last one emptied, unless something kept it. */
static struct scope *scope_fresh(struct rt *rt, struct scope *last, struct scope *parent)
{
	if (!last || last->captured)
		return scope_new(rt, parent);
	last->n = 0;
	return last;
}

static void scope_set(struct rt *rt, struct scope *s, const char *name, struct tv v)
{
	for (uint32_t i = 0; i < s->n; i++) {
		if (s->names[i] == name) {
			s->vals[i] = v;
			return;
		}
	}
	if (s->n == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 4;
		s->names = ar_realloc(&rt->ar, s->names, s->cap * sizeof(char *), cap * sizeof(char *));
		s->vals = ar_realloc(&rt->ar, s->vals, s->cap * sizeof(struct tv), cap * sizeof(struct tv));
		s->cap = cap;
	}
	s->names[s->n] = name;
	s->vals[s->n] = v;
	s->n++;
}

static bool scope_find(const struct scope *s, const char *name, struct tv *out)
{
	for (; s; s = s->parent) {
		for (uint32_t i = s->n; i-- > 0;) {
			if (s->names[i] == name) {
				*out = s->vals[i];
				return true;
			}
		}
	}
	return false;
}

static struct tv lookup(struct rt *rt, struct scope *sc, const char *name)
{
	struct tv v;
	if (scope_find(sc, name, &v) || vars_get_value(rt->vars, name, &v) || global_lookup(name, &v))
		return v;
	return tv_undef(name, NULL);
}

/* ---- helpers ------------------------------------------------------------ */

struct tv rt_str(struct rt *rt, const char *p, size_t n)
{
	return tv_strn(ar_strndup(&rt->ar, p, n), n);
}

struct tv rt_to_str(struct rt *rt, struct tv v)
{
	if (v.kind == TV_STR) {
		v.flags = 0;
		return v;
	}
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	tv_str_append(&b, v);
	return tv_strn(b.p ? b.p : "", b.n);
}

static struct tv undef_hint(struct rt *rt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static struct tv undef_hint(struct rt *rt, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + 1, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	buf[0] = '\1';
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	return tv_undef(ar_strndup(&rt->ar, buf, (size_t)n + 1), NULL);
}

static const char *owner_name(struct tv v)
{
	switch (v.kind) {
	case TV_NONE: return "None";
	case TV_NS: return "jinja2.utils.Namespace object";
	case TV_LOOP: return "jinja2.runtime.LoopContext object";
	case TV_MACRO: return "jinja2.runtime.Macro object";
	case TV_STR: return (v.flags & TVF_MARKUP) ? "markupsafe.Markup object" : "str object";
	default: break;
	}
	static const char *const names[] = {
		[TV_BOOL] = "bool object", [TV_INT] = "int object", [TV_BIGINT] = "int object",
		[TV_FLOAT] = "float object", [TV_LIST] = "list object", [TV_DICT] = "dict object",
		[TV_FUNC] = "function object", [TV_METHOD] = "builtin_function_or_method object",
		[TV_CYCLER] = "jinja2.utils.Cycler object", [TV_JOINER] = "jinja2.utils.Joiner object",
	};
	if (v.kind == TV_LIST && (v.flags & TVF_TUPLE))
		return "tuple object";
	if (v.kind == TV_LIST && (v.flags & TVF_ITER))
		return "generator object";
	return v.kind < sizeof(names) / sizeof(names[0]) && names[v.kind] ? names[v.kind] : "object";
}

static struct tv missing_attr(struct rt *rt, struct tv obj, const char *name, size_t n)
{
	return tv_undef(ar_strndup(&rt->ar, name, n), owner_name(obj));
}

size_t rt_len(struct rt *rt, struct tv v)
{
	switch (v.kind) {
	case TV_STR:
		rt_work(rt, v.s.n);
		return utf8_len(v.s.p, v.s.n);
	case TV_LIST:
		if (v.flags & TVF_ITER)
			break;
		return v.l->n;
	case TV_DICT:
		return v.d->n;
	case TV_NS:
		break;
	case TV_UNDEF:
		return 0;
	case TV_LOOP:
		return v.loop->items->n;
	default:
		break;
	}
	rt_fail(rt, "object of type '%s' has no len()", tv_type_name(v));
}

struct tlist *rt_iterate(struct rt *rt, struct tv v)
{
	switch (v.kind) {
	case TV_LIST:
		return v.l;
	case TV_DICT: {
		struct tv l = tv_list_new(&rt->ar, 0, 0);
		l.l->n = v.d->n;
		l.l->v = v.d->k;
		return l.l;
	}
	case TV_STR: {
		size_t n = utf8_len(v.s.p, v.s.n);
		struct tv l = tv_list_new(&rt->ar, n, 0);
		const char *p = v.s.p, *end = v.s.p + v.s.n;
		for (size_t i = 0; i < n; i++) {
			const char *start = p;
			utf8_next(&p, end);
			l.l->v[i] = tv_strn(start, (size_t)(p - start));
		}
		return l.l;
	}
	case TV_UNDEF:
		return tv_list_new(&rt->ar, 0, 0).l;
	case TV_LOOP:
		return v.loop->items;
	default:
		rt_fail(rt, "'%s' object is not iterable", tv_type_name(v));
	}
}

/* ---- attribute and item access (the sandbox's getattr/getitem) --------- */

static struct tv loop_attr(struct rt *rt, struct tv v, const char *name)
{
	struct tloop *l = v.loop;
	size_t n = l->items->n, i = l->index0;
	if (!strcmp(name, "index"))
		return tv_int((int64_t)i + 1);
	if (!strcmp(name, "index0"))
		return tv_int((int64_t)i);
	if (!strcmp(name, "revindex"))
		return tv_int((int64_t)(n - i));
	if (!strcmp(name, "revindex0"))
		return tv_int((int64_t)(n - i - 1));
	if (!strcmp(name, "first"))
		return tv_bool(i == 0);
	if (!strcmp(name, "last"))
		return tv_bool(i + 1 == n);
	if (!strcmp(name, "length"))
		return tv_int((int64_t)n);
	if (!strcmp(name, "depth"))
		return tv_int(l->depth0 + 1);
	if (!strcmp(name, "depth0"))
		return tv_int(l->depth0);
	if (!strcmp(name, "previtem"))
		return i > 0 ? l->items->v[i - 1] : undef_hint(rt, "there is no previous item");
	if (!strcmp(name, "nextitem"))
		return i + 1 < n ? l->items->v[i + 1] : undef_hint(rt, "there is no next item");
	struct tv m = method_lookup(rt, v, name, strlen(name));
	if (m.kind != TV_UNDEF || m.flags)
		return m;
	return missing_attr(rt, v, name, strlen(name));
}

static struct tv getattr_impl(struct rt *rt, struct tv obj, const char *name, size_t n, bool items)
{
	struct tv v;
	switch (obj.kind) {
	case TV_UNDEF:
		rt_fail_undef(rt, obj);
	case TV_LOOP:
		return loop_attr(rt, obj, name);
	case TV_NS:
		for (size_t i = 0; i < obj.ns->n; i++)
			if (obj.ns->k[i].s.n == n && !memcmp(obj.ns->k[i].s.p, name, n))
				return obj.ns->v[i];
		return missing_attr(rt, obj, name, n);
	case TV_MACRO:
		if (!strcmp(name, "name"))
			return tv_strz(obj.m->name);
		return missing_attr(rt, obj, name, n);
	default:
		break;
	}
	/* groupby's (grouper, list) namedtuples */
	if (obj.kind == TV_LIST && (obj.flags & TVF_TUPLE) && (obj.flags & TVF_KEYS) && obj.l->n == 2) {
		if (!strcmp(name, "grouper"))
			return obj.l->v[0];
		if (!strcmp(name, "list"))
			return obj.l->v[1];
	}
	if (n >= 2 && name[0] == '_' && name[1] == '_') {
		struct tv u = undef_hint(rt, "access to attribute '%s' of '%s' object is unsafe.", name,
					 tv_type_name(obj));
		u.flags |= TVF_UNSAFE;
		return u;
	}
	v = method_lookup(rt, obj, name, n);
	if (v.kind != TV_UNDEF || v.flags)
		return v;
	if (items && obj.kind == TV_DICT && tv_dict_get(obj.d, tv_strn(name, n), &v))
		return v;
	return missing_attr(rt, obj, name, n);
}

struct tv rt_getattr(struct rt *rt, struct tv obj, const char *name, size_t n)
{
	return getattr_impl(rt, obj, name, n, true);
}

struct tv rt_getattr_only(struct rt *rt, struct tv obj, const char *name, size_t n)
{
	return getattr_impl(rt, obj, name, n, false);
}

static struct tv missing_item(struct rt *rt, struct tv obj, struct tv key)
{
	if (key.kind == TV_STR)
		return tv_undef(ar_strndup(&rt->ar, key.s.p, key.s.n), owner_name(obj));
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	tv_repr_append(&b, key);
	struct tv u = tv_undef(b.p ? b.p : "", owner_name(obj));
	u.flags |= TVF_KEYS;
	return u;
}

struct tv rt_getitem(struct rt *rt, struct tv obj, struct tv key)
{
	struct tv v;
	if (obj.kind == TV_UNDEF)
		rt_fail_undef(rt, obj);
	switch (obj.kind) {
	case TV_DICT:
		if (tv_hashable(key) && tv_dict_get(obj.d, key, &v))
			return v;
		break;
	case TV_LIST:
	case TV_STR:
		if (obj.kind == TV_LIST && (obj.flags & TVF_ITER))
			break;
		if (key.kind == TV_INT || key.kind == TV_BOOL) {
			int64_t i = key.kind == TV_BOOL ? key.b : key.i;
			if (obj.kind == TV_LIST) {
				int64_t len = (int64_t)obj.l->n;
				if (i < 0)
					i += len;
				if (i >= 0 && i < len)
					return obj.l->v[i];
			} else {
				rt_work(rt, obj.s.n);
				int64_t len = (int64_t)utf8_len(obj.s.p, obj.s.n);
				if (i < 0)
					i += len;
				if (i >= 0 && i < len) {
					size_t off = utf8_offset(obj.s.p, obj.s.n, (size_t)i);
					size_t end = utf8_offset(obj.s.p + off, obj.s.n - off, 1);
					return tv_strn(obj.s.p + off, end);
				}
			}
		}
		break;
	default:
		break;
	}
	if (key.kind == TV_STR) {
		struct tv a = obj.kind == TV_DICT ? method_lookup(rt, obj, key.s.p, key.s.n)
						  : (struct tv){ .kind = TV_UNDEF };
		if (obj.kind == TV_DICT)
			return (a.kind != TV_UNDEF || a.flags) ? a : missing_item(rt, obj, key);
		char *name = ar_strndup(&rt->ar, key.s.p, key.s.n);
		return rt_getattr(rt, obj, name, key.s.n);
	}
	return missing_item(rt, obj, key);
}

static bool slice_index(struct rt *rt, struct tv v, int64_t *out)
{
	if (v.kind == TV_NONE || v.kind == TV_UNDEF)
		return false;
	if (v.kind == TV_INT) {
		*out = v.i;
		return true;
	}
	if (v.kind == TV_BOOL) {
		*out = v.b;
		return true;
	}
	rt_fail(rt, "slice indices must be integers or None or have an __index__ method");
}

/* Python's slice.indices() + the copy. */
static struct tv do_slice(struct rt *rt, struct tv obj, struct tv vstart, struct tv vstop, struct tv vstep)
{
	if (obj.kind == TV_UNDEF)
		rt_fail_undef(rt, obj);
	/* jinja2 compiles slices to a plain Python subscript (no sandbox
	 * getitem): anything but str, list and tuple is a TypeError */
	if (obj.kind == TV_DICT)
		rt_fail(rt, "unhashable type: 'slice'");
	if (obj.kind != TV_STR && !(obj.kind == TV_LIST && !(obj.flags & TVF_ITER)))
		rt_fail(rt, "'%s' object is not subscriptable", tv_type_name(obj));
	rt_work_str(rt, obj);
	int64_t len = obj.kind == TV_STR ? (int64_t)utf8_len(obj.s.p, obj.s.n) : (int64_t)obj.l->n;
	int64_t step = 1, start, stop;
	if (slice_index(rt, vstep, &step) && step == 0)
		rt_fail(rt, "slice step cannot be zero");
	bool has_start = slice_index(rt, vstart, &start);
	bool has_stop = slice_index(rt, vstop, &stop);
	if (!has_start) {
		start = step < 0 ? len - 1 : 0;
	} else {
		if (start < 0)
			start += len;
		if (start < 0)
			start = step < 0 ? -1 : 0;
		else if (start >= len)
			start = step < 0 ? len - 1 : len;
	}
	if (!has_stop) {
		stop = step < 0 ? -1 : len;
	} else {
		if (stop < 0)
			stop += len;
		if (stop < 0)
			stop = step < 0 ? -1 : 0;
		else if (stop >= len)
			stop = step < 0 ? len - 1 : len;
	}
	int64_t count = 0;
	if (step > 0 && start < stop)
		count = (stop - start - 1) / step + 1;
	else if (step < 0 && stop < start)
		count = (start - stop - 1) / (-step) + 1;
	if (obj.kind == TV_LIST) {
		struct tv r = tv_list_new(&rt->ar, (size_t)count, obj.flags & TVF_TUPLE);
		for (int64_t i = 0; i < count; i++)
			r.l->v[i] = obj.l->v[start + i * step];
		return r;
	}
	if (step == 1) {
		size_t a = utf8_offset(obj.s.p, obj.s.n, (size_t)start);
		size_t b = utf8_offset(obj.s.p, obj.s.n, (size_t)(start + count));
		return tv_strn(obj.s.p + a, b - a);
	}
	/* general step: index the code points */
	size_t *offs = ar_alloc_raw(&rt->ar, ((size_t)len + 1) * sizeof(size_t));
	const char *p = obj.s.p, *end = obj.s.p + obj.s.n;
	for (int64_t i = 0; i < len; i++) {
		offs[i] = (size_t)(p - obj.s.p);
		utf8_next(&p, end);
	}
	offs[len] = obj.s.n;
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	for (int64_t i = 0; i < count; i++) {
		int64_t k = start + i * step;
		ab_add(&b, obj.s.p + offs[k], offs[k + 1] - offs[k]);
	}
	return tv_strn(b.p ? b.p : "", b.n);
}

/* ---- operators ---------------------------------------------------------- */

static bool is_intlike(struct tv v) { return v.kind == TV_INT || v.kind == TV_BOOL; }
static int64_t as_int(struct tv v) { return v.kind == TV_BOOL ? v.b : v.i; }

_Noreturn static void bad_operands(struct rt *rt, const char *op, struct tv a, struct tv b)
{
	if (a.kind == TV_UNDEF)
		rt_fail_undef(rt, a);
	if (b.kind == TV_UNDEF)
		rt_fail_undef(rt, b);
	if (!strcmp(op, "+") && a.kind == TV_STR && !(a.flags & TVF_MARKUP))
		rt_fail(rt, "can only concatenate str (not \"%s\") to str", tv_type_name(b));
	if (!strcmp(op, "+") && a.kind == TV_LIST && !(a.flags & TVF_ITER))
		rt_fail(rt, "can only concatenate %s (not \"%s\") to %s", tv_type_name(a),
			tv_type_name(b), tv_type_name(a));
	rt_fail(rt, "unsupported operand type(s) for %s: '%s' and '%s'", op, tv_type_name(a),
		tv_type_name(b));
}

static struct tv repeat(struct rt *rt, struct tv seq, int64_t times)
{
	if (times < 0)
		times = 0;
	if (seq.kind == TV_STR ? seq.s.n == 0 : seq.l->n == 0)
		times = 0;
	if (seq.kind == TV_STR) {
		if (seq.s.n && (uint64_t)times > rt->max_output / seq.s.n) {
			rt->err_code = -E2BIG;
			rt_fail(rt, "string repetition too large (limit %zu bytes)", rt->max_output);
		}
		size_t n = seq.s.n * (size_t)times;
		char *p = ar_alloc_raw(&rt->ar, n + 1);
		for (int64_t i = 0; i < times; i++)
			memcpy(p + (size_t)i * seq.s.n, seq.s.p, seq.s.n);
		p[n] = '\0';
		return tv_strn(p, n);
	}
	size_t n = seq.l->n;
	if (n && (uint64_t)times > (rt->max_output / sizeof(struct tv)) / n) {
		rt->err_code = -E2BIG;
		rt_fail(rt, "list repetition too large");
	}
	struct tv r = tv_list_new(&rt->ar, n * (size_t)times, seq.flags & TVF_TUPLE);
	for (int64_t i = 0; i < times; i++)
		memcpy(r.l->v + (size_t)i * n, seq.l->v, n * sizeof(struct tv));
	return r;
}

/* The strings parts[0..n) (n >= 1) end to end, appended in place to
 * parts[0] where ar_extend() allows: a = a + b in a loop then costs the
 * length of b, not of a. */
static struct tv join_parts(struct rt *rt, const struct tv *parts, size_t n)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		total += parts[i].s.n;
		if (total > rt->max_output) {
			rt->err_code = -E2BIG;
			rt_fail(rt, "string too large (limit %zu bytes)", rt->max_output);
		}
	}
	size_t len0 = parts[0].s.n;
	char *p = ar_extend(&rt->ar, parts[0].s.p, len0, total - len0);
	size_t at = len0;
	for (size_t i = 1; i < n; i++) {
		if (parts[i].s.n)
			memcpy(p + at, parts[i].s.p, parts[i].s.n);
		at += parts[i].s.n;
	}
	p[total] = '\0';
	return tv_strn(p, total);
}

static struct tv concat_str(struct rt *rt, struct tv a, struct tv b)
{
	bool markup = (a.flags | b.flags) & TVF_MARKUP;
	if (markup) {
		/* Markup + str escapes the plain side */
		if (!(a.flags & TVF_MARKUP))
			a = str_escape_html(rt, a);
		if (!(b.flags & TVF_MARKUP))
			b = str_escape_html(rt, b);
	}
	struct tv parts[2] = { a, b };
	struct tv r = join_parts(rt, parts, 2);
	if (markup)
		r.flags |= TVF_MARKUP;
	return r;
}

static void float_divmod(double vx, double wx, double *floordiv, double *modulo)
{
	double mod = fmod(vx, wx), div = (vx - mod) / wx;
	if (mod) {
		if ((wx < 0) != (mod < 0)) {
			mod += wx;
			div -= 1.0;
		}
	} else {
		mod = copysign(0.0, wx);
	}
	double fd;
	if (div) {
		fd = floor(div);
		if (div - fd > 0.5)
			fd += 1.0;
	} else {
		fd = copysign(0.0, vx / wx);
	}
	*floordiv = fd;
	*modulo = mod;
}

static struct tv int_pow(struct rt *rt, int64_t base, int64_t exp)
{
	int64_t result = 1;
	while (exp > 0) {
		if (exp & 1) {
			if (__builtin_mul_overflow(result, base, &result))
				goto overflow;
		}
		exp >>= 1;
		if (exp && __builtin_mul_overflow(base, base, &base))
			goto overflow;
	}
	return tv_int(result);
overflow:
	rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
}

static struct tv binop(struct rt *rt, int op, struct tv a, struct tv b)
{
	static const char *const names[] = { "+", "-", "*", "/", "//", "%", "**" };
	if (a.kind == TV_BIGINT)
		a = tv_float(tv_as_double(a));
	if (b.kind == TV_BIGINT)
		b = tv_float(tv_as_double(b));
	bool nums = tv_is_num(a) && tv_is_num(b);
	bool ints = is_intlike(a) && is_intlike(b);
	int64_t r;

	switch (op) {
	case OP_ADD:
		if (ints) {
			if (__builtin_add_overflow(as_int(a), as_int(b), &r))
				rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
			return tv_int(r);
		}
		if (nums)
			return tv_float(tv_as_double(a) + tv_as_double(b));
		if (a.kind == TV_STR && b.kind == TV_STR)
			return concat_str(rt, a, b);
		if (a.kind == TV_LIST && b.kind == TV_LIST && !((a.flags | b.flags) & TVF_ITER) &&
		    (a.flags & TVF_TUPLE) == (b.flags & TVF_TUPLE)) {
			/* appended in place where ar_extend() allows, as strings */
			size_t n = a.l->n + b.l->n;
			if (n > rt->max_output / sizeof(struct tv)) {
				rt->err_code = -E2BIG;
				rt_fail(rt, "list too large");
			}
			struct tv l = { .kind = TV_LIST, .flags = a.flags & TVF_TUPLE };
			l.l = ar_alloc(&rt->ar, sizeof(*l.l));
			l.l->n = n;
			l.l->v = ar_extend(&rt->ar, a.l->v, a.l->n * sizeof(struct tv),
					   b.l->n * sizeof(struct tv));
			if (b.l->n)
				memcpy(l.l->v + a.l->n, b.l->v, b.l->n * sizeof(struct tv));
			return l;
		}
		break;
	case OP_SUB:
		if (ints) {
			if (__builtin_sub_overflow(as_int(a), as_int(b), &r))
				rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
			return tv_int(r);
		}
		if (nums)
			return tv_float(tv_as_double(a) - tv_as_double(b));
		break;
	case OP_MUL:
		if (ints) {
			if (__builtin_mul_overflow(as_int(a), as_int(b), &r))
				rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
			return tv_int(r);
		}
		if (nums)
			return tv_float(tv_as_double(a) * tv_as_double(b));
		if ((a.kind == TV_STR || (a.kind == TV_LIST && !(a.flags & TVF_ITER))) && is_intlike(b))
			return repeat(rt, a, as_int(b));
		if ((b.kind == TV_STR || (b.kind == TV_LIST && !(b.flags & TVF_ITER))) && is_intlike(a))
			return repeat(rt, b, as_int(a));
		break;
	case OP_DIV:
		if (nums) {
			if (tv_as_double(b) == 0)
				rt_fail(rt, "division by zero");
			return tv_float(tv_as_double(a) / tv_as_double(b));
		}
		break;
	case OP_FLOORDIV:
	case OP_MOD:
		if (ints) {
			int64_t x = as_int(a), y = as_int(b);
			if (y == 0)
				rt_fail(rt, op == OP_MOD ? "integer modulo by zero" : "integer division or modulo by zero");
			if (x == INT64_MIN && y == -1)
				return op == OP_MOD ? tv_int(0) : int_pow(rt, 2, 63);
			int64_t q = x / y, m = x % y;
			if (m != 0 && ((m < 0) != (y < 0))) {
				m += y;
				q -= 1;
			}
			return tv_int(op == OP_MOD ? m : q);
		}
		if (nums) {
			double fd, mod;
			if (tv_as_double(b) == 0)
				rt_fail(rt, "float modulo");
			float_divmod(tv_as_double(a), tv_as_double(b), &fd, &mod);
			return tv_float(op == OP_MOD ? mod : fd);
		}
		if (op == OP_MOD && a.kind == TV_STR)
			return str_percent_format(rt, a, b);
		break;
	case OP_POW:
		if (ints && as_int(b) >= 0)
			return int_pow(rt, as_int(a), as_int(b));
		if (nums) {
			double x = tv_as_double(a), y = tv_as_double(b);
			if (x == 0 && y < 0)
				rt_fail(rt, "0.0 cannot be raised to a negative power");
			if (x < 0 && y != floor(y))
				rt_fail(rt, "complex results are not supported");
			return tv_float(pow(x, y));
		}
		break;
	}
	bad_operands(rt, names[op], a, b);
}

/* Ordering for <, sort and friends: -1, 0, 1; errors on unorderable. */
int rt_order(struct rt *rt, struct tv a, struct tv b)
{
	rt_stack_check(rt);
	if (a.kind == TV_UNDEF)
		rt_fail_undef(rt, a);
	if (b.kind == TV_UNDEF)
		rt_fail_undef(rt, b);
	if (tv_is_num(a) && tv_is_num(b)) {
		if (is_intlike(a) && is_intlike(b))
			return as_int(a) < as_int(b) ? -1 : as_int(a) > as_int(b);
		double x = tv_as_double(a), y = tv_as_double(b);
		return x < y ? -1 : x > y;
	}
	if (a.kind == TV_STR && b.kind == TV_STR) {
		size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
		int c = memcmp(a.s.p, b.s.p, n);
		if (c)
			return c < 0 ? -1 : 1;
		return a.s.n < b.s.n ? -1 : a.s.n > b.s.n;
	}
	if (a.kind == TV_LIST && b.kind == TV_LIST && !((a.flags | b.flags) & TVF_ITER) &&
	    (a.flags & TVF_TUPLE) == (b.flags & TVF_TUPLE)) {
		size_t n = a.l->n < b.l->n ? a.l->n : b.l->n;
		for (size_t i = 0; i < n; i++)
			if (!tv_equal(a.l->v[i], b.l->v[i]))
				return rt_order(rt, a.l->v[i], b.l->v[i]);
		return a.l->n < b.l->n ? -1 : a.l->n > b.l->n;
	}
	rt_fail(rt, "'<' not supported between instances of '%s' and '%s'", tv_type_name(a),
		tv_type_name(b));
}

static bool contains(struct rt *rt, struct tv container, struct tv item)
{
	switch (container.kind) {
	case TV_STR:
		if (item.kind != TV_STR) {
			if (item.kind == TV_UNDEF)
				rt_fail_undef(rt, item);
			rt_fail(rt, "'in <string>' requires string as left operand, not %s", tv_type_name(item));
		}
		if (item.s.n == 0)
			return true;
		rt_work(rt, container.s.n);
		return memmem(container.s.p, container.s.n, item.s.p, item.s.n) != NULL;
	case TV_LIST:
		rt_work(rt, container.l->n * sizeof(struct tv));
		for (size_t i = 0; i < container.l->n; i++)
			if (tv_equal(container.l->v[i], item))
				return true;
		return false;
	case TV_DICT: {
		struct tv v;
		if (!tv_hashable(item))
			rt_fail(rt, "unhashable type: '%s'", tv_type_name(item));
		return tv_dict_get(container.d, item, &v);
	}
	case TV_UNDEF:
		return false;
	case TV_LOOP:
		rt_work(rt, container.loop->items->n * sizeof(struct tv));
		for (size_t i = 0; i < container.loop->items->n; i++)
			if (tv_equal(container.loop->items->v[i], item))
				return true;
		return false;
	default:
		rt_fail(rt, "argument of type '%s' is not iterable", tv_type_name(container));
	}
}

bool rt_compare(struct rt *rt, int op, struct tv a, struct tv b)
{
	if (a.kind == TV_STR && b.kind == TV_STR && a.s.n == b.s.n)
		rt_work(rt, a.s.n);
	switch (op) {
	case CMP_EQ:
		return tv_equal(a, b);
	case CMP_NE:
		return !tv_equal(a, b);
	case CMP_IN:
		return contains(rt, b, a);
	case CMP_NOTIN:
		return !contains(rt, b, a);
	default:
		break;
	}
	/* NaN compares false both ways */
	if ((a.kind == TV_FLOAT && isnan(a.f)) || (b.kind == TV_FLOAT && isnan(b.f))) {
		if (tv_is_num(a) && tv_is_num(b))
			return false;
	}
	int c = rt_order(rt, a, b);
	switch (op) {
	case CMP_LT: return c < 0;
	case CMP_LE: return c <= 0;
	case CMP_GT: return c > 0;
	default: return c >= 0;
	}
}

/* ---- calls ------------------------------------------------------------- */

void bind_args(struct rt *rt, const char *fname, const struct callv *cv,
	       const char *const *names, int np, struct tv *out, bool *given)
{
	for (int i = 0; i < np; i++)
		given[i] = false;
	if (cv->npos > (size_t)np)
		rt_fail(rt, "%s() takes at most %d argument%s (%zu given)", fname, np,
			np == 1 ? "" : "s", cv->npos);
	for (size_t i = 0; i < cv->npos; i++) {
		out[i] = cv->pos[i];
		given[i] = true;
	}
	for (size_t k = 0; k < cv->nkw; k++) {
		int i;
		for (i = 0; i < np; i++)
			if (!strcmp(names[i], cv->kwn[k]))
				break;
		if (i == np)
			rt_fail(rt, "%s() got an unexpected keyword argument '%s'", fname, cv->kwn[k]);
		if (given[i])
			rt_fail(rt, "%s() got multiple values for argument '%s'", fname, cv->kwn[k]);
		out[i] = cv->kwv[k];
		given[i] = true;
	}
}

static struct tv capture(struct rt *rt, struct scope *sc, struct nlist body, int *status)
{
	struct abuf buf;
	ab_init(&buf, &rt->ar, rt->max_output);
	struct abuf *saved = rt->out;
	rt->out = &buf;
	int st = exec_body(rt, sc, body);
	rt->out = saved;
	if (status)
		*status = st;
	return tv_strn(buf.p ? buf.p : "", buf.n);
}

static struct tv call_macro(struct rt *rt, struct tmacro *m, const struct callv *cv)
{
	const struct node *def = m->def;
	uint32_t np = def->args.n;
	const struct tmpl *t = rt->t;

	if (rt->depth >= rt->max_depth) {
		rt->err_code = -E2BIG;
		rt_fail(rt, "macro calls nested too deeply (limit %d)", rt->max_depth);
	}
	struct scope *sc = scope_new(rt, m->closure);
	bool given_small[32] = { false };
	bool *given = np < 32 ? given_small : ar_alloc(&rt->ar, (np + 1) * sizeof(bool));
	if (cv->npos > np && !(def->flags & NF_VARARGS))
		rt_fail(rt, "macro '%s' takes not more than %u argument(s)", m->name, np);
	for (size_t i = 0; i < cv->npos && i < np; i++) {
		scope_set(rt, sc, def->args.v[i]->name, cv->pos[i]);
		given[i] = true;
	}
	struct dict_builder extra = { 0 };
	if (def->flags & NF_KWARGS)
		db_init(&extra, &rt->ar, 4);
	struct tv caller = { .kind = TV_UNDEF };
	bool have_caller = false;
	for (size_t k = 0; k < cv->nkw; k++) {
		uint32_t i;
		for (i = 0; i < np; i++)
			if (!strcmp(def->args.v[i]->name, cv->kwn[k]))
				break;
		if (i < np && !given[i]) {
			scope_set(rt, sc, def->args.v[i]->name, cv->kwv[k]);
			given[i] = true;
		} else if (!strcmp(cv->kwn[k], "caller") && (def->flags & NF_CALLER)) {
			caller = cv->kwv[k];
			have_caller = true;
		} else if (def->flags & NF_KWARGS) {
			db_put(&extra, tv_strz(cv->kwn[k]), cv->kwv[k]);
		} else if (!strcmp(cv->kwn[k], "caller")) {
			rt_fail(rt, "macro '%s' was invoked with two values for the special caller "
				"argument. This is most likely a bug.", m->name);
		} else {
			rt_fail(rt, "macro '%s' takes no keyword argument '%s'", m->name, cv->kwn[k]);
		}
	}
	/* every parameter is a local of the macro: a default that names a
	 * parameter not yet set sees it undefined, not an outer variable */
	for (uint32_t i = 0; i < np; i++)
		if (!given[i])
			scope_set(rt, sc, def->args.v[i]->name,
				  undef_hint(rt, "parameter '%s' was not provided", def->args.v[i]->name));
	for (uint32_t i = 0; i < np; i++)
		if (!given[i] && def->kwv.v[i])
			scope_set(rt, sc, def->args.v[i]->name, eval(rt, sc, def->kwv.v[i]));
	if (def->flags & NF_VARARGS) {
		size_t n = cv->npos > np ? cv->npos - np : 0;
		struct tv va = tv_list_new(&rt->ar, n, TVF_TUPLE);
		for (size_t i = 0; i < n; i++)
			va.l->v[i] = cv->pos[np + i];
		scope_set(rt, sc, t->n_varargs, va);
	}
	if (def->flags & NF_KWARGS)
		scope_set(rt, sc, t->n_kwargs, db_done(&extra));
	if (def->flags & NF_CALLER) {
		if (!have_caller)
			caller = undef_hint(rt, "No caller defined");
		scope_set(rt, sc, t->n_caller, caller);
	}
	rt->depth++;
	uint32_t line = rt->line;
	struct tv out = capture(rt, sc, def->body, NULL);
	rt->line = line;
	rt->depth--;
	return out;
}

static struct tv run_loop(struct rt *rt, struct scope *sc, const struct node *n, struct tv iterable,
			  int depth0);

struct tv rt_call(struct rt *rt, struct tv fn, const struct callv *cv)
{
	switch (fn.kind) {
	case TV_MACRO:
		return call_macro(rt, fn.m, cv);
	case TV_FUNC:
		return global_call(rt, fn.id, cv);
	case TV_METHOD:
		return method_call(rt, fn.meth, cv);
	case TV_LOOP:
		if (!(fn.loop->node->flags & NF_RECURSIVE))
			rt_fail(rt, "The loop must be marked 'recursive' to be called recursively.");
		if (cv->npos != 1 || cv->nkw)
			rt_fail(rt, "loop() takes exactly one argument");
		if (rt->depth >= rt->max_depth) {
			rt->err_code = -E2BIG;
			rt_fail(rt, "recursive loops nested too deeply (limit %d)", rt->max_depth);
		}
		{
			rt->depth++;
			struct tv r = run_loop(rt, fn.loop->scope, fn.loop->node, cv->pos[0],
					       fn.loop->depth0 + 1);
			rt->depth--;
			return r;
		}
	case TV_JOINER: {
		if (!fn.cy->used) {
			fn.cy->used = true;
			return tv_strn("", 0);
		}
		return tv_strz(fn.cy->sep);
	}
	case TV_UNDEF:
		rt_fail_undef(rt, fn);
	default:
		rt_fail(rt, "'%s' object is not callable", tv_type_name(fn));
	}
}

static void eval_args(struct rt *rt, struct scope *sc, const struct node *n, struct callv *cv,
		      int extra_kw)
{
	size_t npos = n->args.n, nkw = n->kwv.n;
	struct tv star = { .kind = TV_NONE }, dstar = { .kind = TV_NONE };
	struct tlist *sl = NULL;
	if (n->c) {
		star = eval(rt, sc, n->c);
		sl = rt_iterate(rt, star);
		npos += sl->n;
	}
	if (n->d) {
		dstar = eval(rt, sc, n->d);
		if (dstar.kind != TV_DICT)
			rt_fail(rt, "argument after ** must be a mapping, not %s", tv_type_name(dstar));
		nkw += dstar.d->n;
	}
	cv->pos = ar_alloc_raw(&rt->ar, (npos + 1) * sizeof(struct tv));
	cv->kwn = ar_alloc_raw(&rt->ar, (nkw + (size_t)extra_kw + 1) * sizeof(char *));
	cv->kwv = ar_alloc_raw(&rt->ar, (nkw + (size_t)extra_kw + 1) * sizeof(struct tv));
	cv->npos = 0;
	cv->nkw = 0;
	for (uint32_t i = 0; i < n->args.n; i++)
		cv->pos[cv->npos++] = eval(rt, sc, n->args.v[i]);
	if (sl)
		for (size_t i = 0; i < sl->n; i++)
			cv->pos[cv->npos++] = sl->v[i];
	for (uint32_t i = 0; i < n->kwv.n; i++) {
		cv->kwn[cv->nkw] = n->kwn[i];
		cv->kwv[cv->nkw++] = eval(rt, sc, n->kwv.v[i]);
	}
	if (n->d) {
		for (size_t i = 0; i < dstar.d->n; i++) {
			struct tv k = dstar.d->k[i];
			if (k.kind != TV_STR)
				rt_fail(rt, "keywords must be strings");
			cv->kwn[cv->nkw] = ar_strndup(&rt->ar, k.s.p, k.s.n);
			cv->kwv[cv->nkw++] = dstar.d->v[i];
		}
	}
}

/* ---- assignment --------------------------------------------------------- */

static void assign(struct rt *rt, struct scope *sc, const struct node *target, struct tv v)
{
	if (target->type == X_NAME) {
		scope_set(rt, sc, target->name, v);
		return;
	}
	if (target->type == X_NSREF) {
		struct tv ns = lookup(rt, sc, target->name);
		if (ns.kind != TV_NS)
			rt_fail(rt, "cannot assign attribute on non-namespace object");
		struct tns *s = ns.ns;
		size_t nlen = strlen(target->name2);
		for (size_t i = 0; i < s->n; i++) {
			if (s->k[i].s.n == nlen && !memcmp(s->k[i].s.p, target->name2, nlen)) {
				s->v[i] = v;
				return;
			}
		}
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 4;
			s->k = ar_realloc(&rt->ar, s->k, s->cap * sizeof(struct tv), cap * sizeof(struct tv));
			s->v = ar_realloc(&rt->ar, s->v, s->cap * sizeof(struct tv), cap * sizeof(struct tv));
			s->cap = cap;
		}
		s->k[s->n] = tv_strn(target->name2, nlen);
		s->v[s->n] = v;
		s->n++;
		return;
	}
	/* tuple unpacking */
	struct tlist *items = rt_iterate(rt, v);
	uint32_t want = target->args.n;
	if (items->n > want)
		rt_fail(rt, "too many values to unpack (expected %u)", want);
	if (items->n < want)
		rt_fail(rt, "not enough values to unpack (expected %u, got %zu)", want, items->n);
	for (uint32_t i = 0; i < want; i++)
		assign(rt, sc, target->args.v[i], items->v[i]);
}

/* ---- filters applied to a node chain (filter blocks, set blocks) -------- */

static struct tv apply_filter_node(struct rt *rt, struct scope *sc, const struct node *f, struct tv input)
{
	if (!f)
		return input;
	struct tv v = f->a ? apply_filter_node(rt, sc, f->a, input) : input;
	if (f->flags & NF_SOFT)
		rt_fail(rt, "No filter named '%s' found.", f->name);
	struct callv cv;
	eval_args(rt, sc, f, &cv, 0);
	return filter_apply(rt, f->filter, v, &cv);
}

/* ---- expressions -------------------------------------------------------- */

static struct tv eval(struct rt *rt, struct scope *sc, const struct node *n)
{
	rt_step(rt);
	switch (n->type) {
	case X_CONST:
		return n->value;
	case X_NAME:
		return lookup(rt, sc, n->name);
	case X_TUPLE:
	case X_LIST: {
		struct tv l = tv_list_new(&rt->ar, n->args.n, n->type == X_TUPLE ? TVF_TUPLE : 0);
		for (uint32_t i = 0; i < n->args.n; i++)
			l.l->v[i] = eval(rt, sc, n->args.v[i]);
		return l;
	}
	case X_DICT: {
		struct dict_builder b;
		db_init(&b, &rt->ar, n->args.n + 1);
		for (uint32_t i = 0; i < n->args.n; i++) {
			struct tv k = eval(rt, sc, n->args.v[i]);
			struct tv v = eval(rt, sc, n->kwv.v[i]);
			if (!tv_hashable(k))
				rt_fail(rt, "unhashable type: '%s'", tv_type_name(k));
			db_put(&b, k, v);
		}
		return db_done(&b);
	}
	case X_GETATTR: {
		struct tv obj = eval(rt, sc, n->a);
		return rt_getattr(rt, obj, n->name, strlen(n->name));
	}
	case X_GETITEM: {
		struct tv obj = eval(rt, sc, n->a);
		if (n->b->type == X_SLICE) {
			const struct node *s = n->b;
			struct tv none = tv_none();
			struct tv a = s->a ? eval(rt, sc, s->a) : none;
			struct tv b = s->b ? eval(rt, sc, s->b) : none;
			struct tv c = s->c ? eval(rt, sc, s->c) : none;
			return do_slice(rt, obj, a, b, c);
		}
		return rt_getitem(rt, obj, eval(rt, sc, n->b));
	}
	case X_SLICE:
		rt_fail(rt, "slice used outside of a subscript");
	case X_CALL: {
		struct tv fn = eval(rt, sc, n->a);
		struct callv cv;
		eval_args(rt, sc, n, &cv, 0);
		return rt_call(rt, fn, &cv);
	}
	case X_FILTER: {
		struct tv v = n->a ? eval(rt, sc, n->a) : tv_strn("", 0);
		if (n->flags & NF_SOFT)
			rt_fail(rt, "No filter named '%s' found.", n->name);
		struct callv cv;
		eval_args(rt, sc, n, &cv, 0);
		return filter_apply(rt, n->filter, v, &cv);
	}
	case X_TEST: {
		struct tv v = eval(rt, sc, n->a);
		if (n->flags & NF_SOFT)
			rt_fail(rt, "No test named '%s' found.", n->name);
		struct callv cv;
		eval_args(rt, sc, n, &cv, 0);
		return tv_bool(test_apply(rt, n->test, v, &cv));
	}
	case X_NOT:
		return tv_bool(!tv_truthy(eval(rt, sc, n->a)));
	case X_NEG:
	case X_POS: {
		struct tv v = eval(rt, sc, n->a);
		bool neg = n->type == X_NEG;
		if (v.kind == TV_BOOL || v.kind == TV_INT) {
			int64_t i = as_int(v);
			if (neg && i == INT64_MIN)
				rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
			return tv_int(neg ? -i : i);
		}
		if (v.kind == TV_FLOAT)
			return tv_float(neg ? -v.f : v.f);
		if (v.kind == TV_BIGINT) {
			if (!neg)
				return v;
			if (v.s.p[0] == '-')
				return (struct tv){ .kind = TV_BIGINT, .s = { v.s.p + 1, v.s.n - 1 } };
			/* a copy of its own: strtod() reads the digits up to the NUL */
			char *p = ar_alloc_raw(&rt->ar, v.s.n + 2);
			p[0] = '-';
			memcpy(p + 1, v.s.p, v.s.n);
			p[v.s.n + 1] = '\0';
			return (struct tv){ .kind = TV_BIGINT, .s = { p, v.s.n + 1 } };
		}
		if (v.kind == TV_UNDEF)
			rt_fail_undef(rt, v);
		rt_fail(rt, "bad operand type for unary %c: '%s'", neg ? '-' : '+', tv_type_name(v));
	}
	case X_BIN: {
		struct tv a = eval(rt, sc, n->a);
		struct tv b = eval(rt, sc, n->b);
		return binop(rt, n->op, a, b);
	}
	case X_AND: {
		struct tv a = eval(rt, sc, n->a);
		return tv_truthy(a) ? eval(rt, sc, n->b) : a;
	}
	case X_OR: {
		struct tv a = eval(rt, sc, n->a);
		return tv_truthy(a) ? a : eval(rt, sc, n->b);
	}
	case X_CONCAT: {
		if (!n->args.n)	/* {% print %} with nothing to print */
			return tv_strn("", 0);
		struct tv *parts = ar_alloc_raw(&rt->ar, n->args.n * sizeof(struct tv));
		for (uint32_t i = 0; i < n->args.n; i++)
			parts[i] = rt_to_str(rt, eval(rt, sc, n->args.v[i]));
		return join_parts(rt, parts, n->args.n);
	}
	case X_COMPARE: {
		struct tv left = eval(rt, sc, n->a);
		for (uint32_t i = 0; i < n->args.n; i++) {
			struct tv right = eval(rt, sc, n->args.v[i]);
			if (!rt_compare(rt, n->ops[i], left, right))
				return tv_bool(false);
			left = right;
		}
		return tv_bool(true);
	}
	case X_COND:
		if (tv_truthy(eval(rt, sc, n->a)))
			return eval(rt, sc, n->b);
		if (n->c)
			return eval(rt, sc, n->c);
		return undef_hint(rt, "the inline if-expression on line %u evaluated to false and no "
				  "else section was defined.", n->line);
	default:
		rt_fail(rt, "internal error: bad expression node %d", n->type);
	}
}

/* ---- statements -------------------------------------------------------- */

static struct tv run_loop(struct rt *rt, struct scope *sc, const struct node *n, struct tv iterable,
			  int depth0)
{
	struct tlist *items = rt_iterate(rt, iterable);
	if (n->c) {
		struct tv kept = tv_list_new(&rt->ar, items->n, 0);
		size_t k = 0;
		struct scope *ts = NULL;
		for (size_t i = 0; i < items->n; i++) {
			ts = scope_fresh(rt, ts, sc);
			assign(rt, ts, n->a, items->v[i]);
			if (tv_truthy(eval(rt, ts, n->c)))
				kept.l->v[k++] = items->v[i];
		}
		kept.l->n = k;
		items = kept.l;
	}
	struct tloop *loop = ar_alloc(&rt->ar, sizeof(*loop));
	loop->items = items;
	loop->depth0 = depth0;
	loop->node = n;
	loop->scope = sc;
	struct tv loopv = { .kind = TV_LOOP };
	loopv.loop = loop;

	struct abuf buf, *saved = rt->out;
	bool recursive = n->flags & NF_RECURSIVE;
	if (recursive && depth0 > 0) {
		ab_init(&buf, &rt->ar, rt->max_output);
		rt->out = &buf;
	}
	if (recursive)
		sc->captured = true;
	struct scope *is = NULL;
	for (size_t i = 0; i < items->n; i++) {
		rt_step(rt);
		loop->index0 = i;
		is = scope_fresh(rt, is, sc);
		assign(rt, is, n->a, items->v[i]);
		scope_set(rt, is, rt->t->n_loop, loopv);
		int st = exec_body(rt, is, n->body);
		if (st == EX_BREAK)
			break;
	}
	if (items->n == 0 && n->alt.n)
		exec_body(rt, sc, n->alt);
	if (recursive && depth0 > 0) {
		rt->out = saved;
		return tv_strn(buf.p ? buf.p : "", buf.n);
	}
	return tv_none();
}

static struct tmacro *make_macro(struct rt *rt, const struct node *def, struct scope *closure)
{
	struct tmacro *m = ar_alloc(&rt->ar, sizeof(*m));
	m->def = def;
	m->closure = closure;
	m->name = def->name;
	closure->captured = true;
	return m;
}

static int exec_stmt(struct rt *rt, struct scope *sc, const struct node *n)
{
	rt_step(rt);
	rt->line = n->line;
	switch (n->type) {
	case S_DATA:
		ab_add(rt->out, n->value.s.p, n->value.s.n);
		return EX_NORMAL;
	case S_PRINT:
		tv_str_append(rt->out, eval(rt, sc, n->a));
		return EX_NORMAL;
	case S_IF:
		if (tv_truthy(eval(rt, sc, n->a)))
			return exec_body(rt, sc, n->body);
		return exec_body(rt, sc, n->alt);
	case S_FOR:
		run_loop(rt, sc, n, eval(rt, sc, n->b), 0);
		return EX_NORMAL;
	case S_SET:
		assign(rt, sc, n->a, eval(rt, sc, n->b));
		return EX_NORMAL;
	case S_SETBLOCK: {
		int st;
		struct tv body = capture(rt, scope_new(rt, sc), n->body, &st);
		if (st != EX_NORMAL)
			return st;
		assign(rt, sc, n->a, apply_filter_node(rt, sc, n->b, body));
		return EX_NORMAL;
	}
	case S_MACRO: {
		struct tv m = { .kind = TV_MACRO };
		m.m = make_macro(rt, n, sc);
		scope_set(rt, sc, n->name, m);
		return EX_NORMAL;
	}
	case S_CALLBLOCK: {
		struct tv caller = { .kind = TV_MACRO };
		caller.m = make_macro(rt, n, sc);
		const struct node *call = n->a;
		struct tv fn = eval(rt, sc, call->a);
		struct callv cv;
		eval_args(rt, sc, call, &cv, 1);
		cv.kwn[cv.nkw] = "caller";
		cv.kwv[cv.nkw++] = caller;
		tv_str_append(rt->out, rt_call(rt, fn, &cv));
		return EX_NORMAL;
	}
	case S_FILTERBLOCK: {
		int st;
		struct tv body = capture(rt, scope_new(rt, sc), n->body, &st);
		if (st != EX_NORMAL)
			return st;
		tv_str_append(rt->out, apply_filter_node(rt, sc, n->b, body));
		return EX_NORMAL;
	}
	case S_WITH: {
		struct scope *ws = scope_new(rt, sc);
		for (uint32_t i = 0; i < n->args.n; i++)
			assign(rt, ws, n->args.v[i], eval(rt, sc, n->kwv.v[i]));
		return exec_body(rt, ws, n->body);
	}
	case S_GENERATION: {
		struct tv body = capture(rt, scope_new(rt, sc), n->body, NULL);
		ab_add(rt->out, body.s.p, body.s.n);
		return EX_NORMAL;
	}
	case S_BREAK:
		return EX_BREAK;
	case S_CONTINUE:
		return EX_CONTINUE;
	default:
		rt_fail(rt, "internal error: bad statement node %d", n->type);
	}
}

static int exec_body(struct rt *rt, struct scope *sc, struct nlist body)
{
	for (uint32_t i = 0; i < body.n; i++) {
		int st = exec_stmt(rt, sc, body.v[i]);
		if (st != EX_NORMAL)
			return st;
	}
	return EX_NORMAL;
}

/* ---- entry point --------------------------------------------------------- */

int tmpl_render(const struct tmpl *t, const struct tmpl_vars *vars,
		const struct tmpl_render_opts *opts, struct strbuf *out)
{
	struct rt *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return err_set(-ENOMEM, "out of memory");
	struct tmpl_limits lim = { 0 };
	if (opts)
		lim = opts->limits;
	rt->t = t;
	rt->vars = vars;
	rt->max_steps = lim.max_steps ? lim.max_steps : TMPL_DEFAULT_MAX_STEPS;
	rt->max_output = lim.max_output ? lim.max_output : TMPL_DEFAULT_MAX_OUTPUT;
	rt->max_depth = lim.max_call_depth > 0 ? lim.max_call_depth : TMPL_DEFAULT_MAX_CALL_DEPTH;
	rt->max_stack = lim.max_stack ? lim.max_stack : TMPL_DEFAULT_MAX_STACK;
	rt->max_time_ms = lim.max_time_ms ? lim.max_time_ms : TMPL_DEFAULT_MAX_TIME_MS;
	if (rt->max_time_ms > UINT64_MAX / 2000000u)
		rt->max_time_ms = UINT64_MAX / 2000000u;
	rt->deadline_ns = now_ns() + rt->max_time_ms * 1000000u;
	rt->next_clock_check = CLOCK_CHECK_STEPS;
	rt->stack_base = __builtin_frame_address(0);
	if (opts && opts->now) {
		rt->now = *opts->now;
	} else {
		time_t now = time(NULL);
		localtime_r(&now, &rt->now);
	}
	ar_init(&rt->ar, lim.max_memory ? lim.max_memory : TMPL_DEFAULT_MAX_MEMORY, rt_oom, rt);

	struct rt *saved_active = rt_active;
	rt_active = rt;
	if (setjmp(rt->jmp)) {
		rt_active = saved_active;
		int code = rt->err_code ? rt->err_code : -EINVAL;
		int rc = err_set(code, "%s: line %u: %s", t->name, rt->line, rt->err);
		ar_free_all(&rt->ar);
		free(rt);
		return rc;
	}
	struct abuf o;
	ab_init(&o, &rt->ar, rt->max_output);
	rt->out = &o;
	struct scope *root = scope_new(rt, NULL);
	exec_body(rt, root, t->body);
	rt_active = saved_active;
	sb_add(out, o.p ? o.p : "", o.n);
	ar_free_all(&rt->ar);
	free(rt);
	return 0;
}
