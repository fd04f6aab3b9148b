/*
 * internal.h - what the files of the template engine share: the arena,
 * the value type, the syntax tree and the render state.  Not a public API
 * (see tmpl.h for that).
 *
 * Memory: everything a compile or a render allocates comes from one arena
 * (struct arena) that is freed as a whole at the end, so the interpreter
 * never frees individual values and values may share bytes freely (a
 * substring points into its parent string).  An arena has a byte cap;
 * going over it is a clean error.  So that values built up piece by piece
 * ({% set ns.s = ns.s + x %}, a list grown by + [x]) take memory in
 * proportion to their size and not to their history, ar_extend() appends
 * to a string or list in place when nothing can see past its end (see
 * there); the C side never writes into a value once it is built.
 *
 * Errors: inside a compile or a render, failures do not return through
 * every caller.  tp_fail()/rt_fail() record the message and longjmp() back
 * to the entry point (tmpl_compile(), tmpl_render()), which frees the arena
 * and returns a negative code; as all memory is in the arena, nothing
 * leaks.  Code below those entry points therefore must not hold malloc()ed
 * memory or locks across calls that can fail.
 *
 * Values (struct tv) model Python's as jinja2 sees them: None, bool, int
 * (64-bit; wider JSON integers are kept as digits), float, str (UTF-8,
 * immutable, may carry jinja2's Markup flag), list/tuple, dict (insertion
 * ordered), Undefined (with the reason, for the error it raises when
 * used), namespace (the only mutable value), macros, loop objects, bound
 * methods and built-in functions.
 */
#ifndef DYN_TMPL_INTERNAL_H
#define DYN_TMPL_INTERNAL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tmpl/tmpl.h"

/* ---- arena ---------------------------------------------------------- */

struct arena_big;

struct arena {
	char *cur, *end;		/* free space in the current chunk */
	void *chunks;			/* singly linked small-object chunks */
	struct arena_big *big;		/* doubly linked large blocks */
	size_t used;			/* bytes taken from malloc */
	size_t cap;			/* 0: unlimited */
	/* Bytes handed out or copied so far, plus what a render adds for
	 * bytes it scans (rt_work()): the render charges steps for them. */
	uint64_t work;
	/* The last blocks ar_extend() made: where in-place growth may happen. */
	struct arena_big *ext[4];
	unsigned ext_next;
	/* Called when the cap is exceeded or malloc fails; must not return. */
	void (*oom)(void *ctx, size_t want);
	void *oom_ctx;
};

void ar_init(struct arena *a, size_t cap, void (*oom)(void *, size_t), void *ctx);
void ar_free_all(struct arena *a);
void *ar_alloc(struct arena *a, size_t n);	/* 8-byte aligned, zeroed */
void *ar_alloc_raw(struct arena *a, size_t n);	/* not zeroed */
/* Resize a block from ar_alloc*(); large blocks grow in place. */
void *ar_realloc(struct arena *a, void *old, size_t oldn, size_t newn);
char *ar_strndup(struct arena *a, const char *s, size_t n);
/* Room to append to an immutable byte sequence (a string's bytes, a list's
 * items): returns memory q whose first n bytes are p's, followed by room
 * for extra more bytes and one spare byte (a string's NUL).  q is p itself
 * when p's bytes end exactly where the last growth of a block made by
 * ar_extend() ended and the block has room: no existing value can see
 * bytes past that point, so writing there changes none.  Otherwise q is a
 * copy in a new block, twice the size needed when p was such a block's
 * end (repeated growth then costs amortised linear time and memory). */
void *ar_extend(struct arena *a, const void *p, size_t n, size_t extra);

/* A growable byte buffer in an arena.  limit: the most bytes it may hold
 * (0: no limit of its own); going past it calls the arena's oom with
 * want = SIZE_MAX, which the owner reports as "output too large". */
struct abuf {
	struct arena *ar;
	char *p;
	size_t n, cap, limit;
};

void ab_init(struct abuf *b, struct arena *ar, size_t limit);
void ab_add(struct abuf *b, const char *s, size_t n);
void ab_adds(struct abuf *b, const char *s);
void ab_addch(struct abuf *b, char c);
void ab_addf(struct abuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ab_add_utf8(struct abuf *b, uint32_t cp);

/* ---- values --------------------------------------------------------- */

enum tv_kind {
	TV_UNDEF, TV_NONE, TV_BOOL, TV_INT, TV_BIGINT, TV_FLOAT, TV_STR,
	TV_LIST, TV_DICT, TV_NS, TV_MACRO, TV_FUNC, TV_METHOD, TV_LOOP,
	TV_CYCLER, TV_JOINER,
};

#define TVF_MARKUP 0x01	/* str: jinja2 Markup (from |safe, |escape) */
#define TVF_TUPLE  0x02	/* list: a Python tuple */
#define TVF_ITER   0x04	/* list: a Python generator/iterator (no len, always true) */
#define TVF_UNSAFE 0x08	/* undef: produced by the sandbox for a blocked attribute */
#define TVF_KEYS   0x10	/* undef: owner/name describe a missing element, not attribute */

struct tlist { size_t n; struct tv *v; };
struct tdict { size_t n; struct tv *k, *v; uint32_t *idx; uint32_t nidx; };
struct tns { size_t n, cap; struct tv *k, *v; };
struct tmethod;
struct tmacro;
struct tloop;
struct tcycler;

struct tv {
	uint8_t kind, flags;
	uint16_t id;		/* TV_FUNC: which built-in */
	union {
		bool b;
		int64_t i;
		double f;
		struct { const char *p; size_t n; } s;	/* STR, BIGINT digits */
		struct tlist *l;
		struct tdict *d;
		struct tns *ns;
		struct tmacro *m;
		struct tmethod *meth;
		struct tloop *loop;
		struct tcycler *cy;
		/* UNDEF: 'name' is undefined / 'owner' has no attribute 'name';
		 * owner == NULL and name starting with '\1': name+1 is the whole hint */
		struct { const char *name; const char *owner; } u;
	};
};

struct tmethod { struct tv self; int id; };

/* Constructors (no allocation except where an arena is passed). */
static inline struct tv tv_none(void) { struct tv v = { .kind = TV_NONE }; return v; }
static inline struct tv tv_bool(bool b) { struct tv v = { .kind = TV_BOOL }; v.b = b; return v; }
static inline struct tv tv_int(int64_t i) { struct tv v = { .kind = TV_INT }; v.i = i; return v; }
static inline struct tv tv_float(double f) { struct tv v = { .kind = TV_FLOAT }; v.f = f; return v; }
static inline struct tv tv_strn(const char *p, size_t n)
{
	struct tv v = { .kind = TV_STR };
	v.s.p = p;
	v.s.n = n;
	return v;
}
struct tv tv_strz(const char *s);
static inline struct tv tv_undef(const char *name, const char *owner)
{
	struct tv v = { .kind = TV_UNDEF };
	v.u.name = name;
	v.u.owner = owner;
	return v;
}
static inline bool tv_is_str(struct tv v) { return v.kind == TV_STR; }
static inline bool tv_is_seq(struct tv v) { return v.kind == TV_LIST; }
static inline bool tv_is_num(struct tv v)
{
	return v.kind == TV_INT || v.kind == TV_FLOAT || v.kind == TV_BOOL || v.kind == TV_BIGINT;
}

struct tv tv_list_new(struct arena *a, size_t n, unsigned flags);	/* n zeroed items */
/* Dict building: add (replaces the value of an equal key, keeping its
 * place), then tv_dict_done() builds the lookup index. */
struct dict_builder { struct arena *ar; struct tv *k, *v; size_t n, cap; };
void db_init(struct dict_builder *b, struct arena *a, size_t hint);
void db_put(struct dict_builder *b, struct tv k, struct tv v);
struct tv db_done(struct dict_builder *b);
/* Lookup; returns false when missing (or the key is unhashable: *err set). */
bool tv_dict_get(const struct tdict *d, struct tv key, struct tv *out);
/* str-key lookup helper. */
bool tv_dict_gets(const struct tdict *d, const char *key, struct tv *out);

/* Python semantics. */
bool tv_truthy(struct tv v);
bool tv_equal(struct tv a, struct tv b);
bool tv_hashable(struct tv v);
uint64_t tv_hash(struct tv v);
double tv_as_double(struct tv v);	/* for BOOL/INT/BIGINT/FLOAT */
const char *tv_type_name(struct tv v);	/* Python's: 'str', 'dict', 'NoneType' ... */
/* Append str(v) / repr(v) as Python prints them. */
void tv_str_append(struct abuf *b, struct tv v);
void tv_repr_append(struct abuf *b, struct tv v);
void fmt_float_repr(struct abuf *b, double f);	/* float.__repr__ */
void fmt_str_repr(struct abuf *b, const char *s, size_t n);
/* The Undefined's message ("'x' is undefined"). */
void tv_undef_msg(struct abuf *b, struct tv v);

/* UTF-8 helpers (strings are valid UTF-8). */
uint32_t utf8_next(const char **p, const char *end);
size_t utf8_len(const char *s, size_t n);		/* code points */
bool utf8_valid(const char *s, size_t n);
size_t utf8_encode(char *out, uint32_t cp);		/* 1..4 bytes */
/* Byte offset of code point index i (clamped to n). */
size_t utf8_offset(const char *s, size_t n, size_t i);
bool py_isspace(uint32_t cp);				/* str.isspace() per char */

/* ---- syntax tree ---------------------------------------------------- */

enum node_type {
	/* expressions */
	X_CONST, X_NAME, X_TUPLE, X_LIST, X_DICT, X_GETATTR, X_GETITEM, X_SLICE,
	X_CALL, X_FILTER, X_TEST, X_NOT, X_NEG, X_POS, X_BIN, X_AND, X_OR,
	X_CONCAT, X_COMPARE, X_COND, X_NSREF,
	/* statements */
	S_DATA, S_PRINT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_CALLBLOCK,
	S_FILTERBLOCK, S_WITH, S_BREAK, S_CONTINUE, S_GENERATION,
};

enum bin_op { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW };
enum cmp_op { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN };

struct node;
struct nlist { struct node **v; uint32_t n; };

struct filter_def;
struct test_def;

/*
 * One node; which fields are used depends on type:
 *   X_CONST value | X_NAME name | X_TUPLE/X_LIST args | X_DICT args=keys kwv=values
 *   X_GETATTR a.name | X_GETITEM a[b] | X_SLICE a:b:c (each may be NULL)
 *   X_CALL a(args, kwn=kwv, *c, **d) | X_FILTER a|name(args...) (a NULL in
 *   filter blocks), filter | X_TEST a is name(args...), test
 *   X_NOT/X_NEG/X_POS a | X_BIN a op b | X_AND/X_OR a b | X_CONCAT args
 *   X_COMPARE a (ops[i] args[i])... | X_COND b if a else c | X_NSREF name.name2
 *   S_DATA value | S_PRINT a | S_IF a body alt | S_FOR a in b if c body alt
 *   (flags NF_RECURSIVE) | S_SET a = b | S_SETBLOCK a, b filter, body
 *   S_MACRO name args=params kwv=defaults body | S_CALLBLOCK a call, args
 *   kwv params, body | S_FILTERBLOCK b filter, body | S_WITH args=targets
 *   kwv=values body | S_GENERATION body
 */
struct node {
	uint8_t type, op;
	uint16_t flags;
	uint32_t line;
	const char *name, *name2;
	struct tv value;
	struct node *a, *b, *c, *d;
	struct nlist body, alt, args, kwv;
	const char **kwn;
	uint8_t *ops;
	const struct filter_def *filter;
	const struct test_def *test;
};

#define NF_RECURSIVE	0x01	/* S_FOR ... recursive */
#define NF_VARARGS	0x02	/* S_MACRO/S_CALLBLOCK body uses varargs */
#define NF_KWARGS	0x04	/* ... uses kwargs */
#define NF_CALLER	0x08	/* ... uses caller */
#define NF_SOFT		0x10	/* X_FILTER/X_TEST: unknown name, fails when run */

/* Compiled template (immutable after tmpl_compile). */
struct tmpl {
	struct arena ar;
	char *name;
	struct nlist body;
	/* Interned special names (pointer comparison with X_NAME names). */
	const char *n_loop, *n_caller, *n_varargs, *n_kwargs;
};

/* ---- render state --------------------------------------------------- */

struct scope {
	struct scope *parent;
	uint32_t n, cap;
	bool captured;		/* a macro or loop refers to it: do not reuse */
	const char **names;	/* interned: compare pointers */
	struct tv *vals;
};

struct tmacro {
	const struct node *def;		/* S_MACRO or S_CALLBLOCK */
	struct scope *closure;
	const char *name;
};

struct tloop {
	struct tlist *items;
	size_t index0;
	int depth0;
	const struct node *node;	/* S_FOR, for loop(...) in recursive loops */
	struct scope *scope;		/* where the loop statement runs */
	struct tv last_changed;
	bool changed_set;
};

struct tcycler { struct tlist *items; size_t pos; const char *sep; bool used; };

struct rt {
	const struct tmpl *t;
	const struct tmpl_vars *vars;
	struct arena ar;
	jmp_buf jmp;
	struct abuf *out;
	uint64_t steps, max_steps;
	uint64_t next_clock_check;	/* spent steps at which to read the clock */
	uint64_t deadline_ns, max_time_ms;	/* CLOCK_MONOTONIC */
	/* The integers 0..nints-1, shared by range() results (lists are
	 * immutable), so that loops over ranges take no memory per run. */
	struct tv *ints;
	size_t nints;
	size_t max_output;
	const char *stack_base;
	size_t max_stack;
	int depth, max_depth;
	uint32_t line;
	struct tm now;
	bool have_now;
	int err_code;
	char err[1024];
};

_Noreturn void rt_fail(struct rt *rt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The render running on this thread (NULL outside tmpl_render), so that
 * the recursive value functions (equality, hashing, repr) can fail cleanly
 * on data nested too deeply for the C stack. */
extern _Thread_local struct rt *rt_active;
void rt_stack_check(struct rt *rt);
static inline void tv_guard(void)
{
	if (rt_active)
		rt_stack_check(rt_active);
}
_Noreturn void rt_fail_undef(struct rt *rt, struct tv u);
void rt_step(struct rt *rt);
/* Charge the step budget for scanning n bytes (allocations and copies are
 * charged by the arena); checked at the next rt_step(). */
static inline void rt_work(struct rt *rt, size_t n) { rt->ar.work += n; }
/* rt_work() for the bytes of a string (others cost nothing here). */
static inline void rt_work_str(struct rt *rt, struct tv v)
{
	if (v.kind == TV_STR)
		rt->ar.work += v.s.n;
}

/* The vars of a render. */
struct tmpl_vars {
	struct arena ar;
	size_t n, cap;
	char **names;		/* malloc()ed */
	struct tv *vals;	/* malloc()ed array; values in ar */
};

/* Set/get a variable's value directly (the value must outlive v's use). */
void vars_put_value(struct tmpl_vars *v, const char *name, struct tv val);
bool vars_get_value(const struct tmpl_vars *v, const char *name, struct tv *out);

/* Call arguments after evaluation. */
struct callv {
	struct tv *pos;
	size_t npos;
	const char **kwn;
	struct tv *kwv;
	size_t nkw;
};

/* Bind cv to parameters names[0..np); missing ones keep their preset
 * value in out[] and have given[i] = false.  Errors name fname. */
void bind_args(struct rt *rt, const char *fname, const struct callv *cv,
	       const char *const *names, int np, struct tv *out, bool *given);

/* ---- interpreter services used by filters and methods ---------------- */

struct tv rt_str(struct rt *rt, const char *p, size_t n);	/* copies */
struct tv rt_to_str(struct rt *rt, struct tv v);		/* str(v) */
struct tv rt_getattr(struct rt *rt, struct tv obj, const char *name, size_t n);
/* Python getattr() alone (the |attr filter): no fallback to dict items. */
struct tv rt_getattr_only(struct rt *rt, struct tv obj, const char *name, size_t n);
struct tv rt_getitem(struct rt *rt, struct tv obj, struct tv key);
/* Iterate as Python's iter(): list/tuple items, dict keys, str chars,
 * Undefined -> empty; error otherwise.  Returns a list (maybe shared). */
struct tlist *rt_iterate(struct rt *rt, struct tv v);
struct tv rt_call(struct rt *rt, struct tv fn, const struct callv *cv);
bool rt_compare(struct rt *rt, int op, struct tv a, struct tv b);
/* a < b as Python's sort sees it (error on unorderable). */
int rt_order(struct rt *rt, struct tv a, struct tv b);
size_t rt_len(struct rt *rt, struct tv v);

/* ---- filters, tests, methods, globals ------------------------------- */

typedef struct tv (*filter_fn)(struct rt *, struct tv, const struct callv *);
typedef bool (*test_fn)(struct rt *, struct tv, const struct callv *);

struct filter_def { const char *name; filter_fn fn; };
struct test_def { const char *name; test_fn fn; };

const struct filter_def *filter_find(const char *name);
const struct test_def *test_find(const char *name);
struct tv filter_apply(struct rt *rt, const struct filter_def *f, struct tv v, const struct callv *cv);
bool test_apply(struct rt *rt, const struct test_def *t, struct tv v, const struct callv *cv);

/* Attribute lookup of built-in methods: a bound method value, an unsafe
 * Undefined (mutating method), or kind TV_UNDEF with flags 0 if none. */
struct tv method_lookup(struct rt *rt, struct tv self, const char *name, size_t n);
struct tv method_call(struct rt *rt, const struct tmethod *m, const struct callv *cv);

enum global_fn {
	G_RANGE = 1, G_DICT, G_NAMESPACE, G_CYCLER, G_JOINER, G_LIPSUM,
	G_RAISE, G_STRFTIME,
};
bool global_lookup(const char *name, struct tv *out);
struct tv global_call(struct rt *rt, int id, const struct callv *cv);

/* String operations shared by filters and methods (Python semantics). */
struct tv str_strip(struct rt *rt, struct tv s, struct tv chars, int which);	/* 1 left 2 right 3 both */
struct tv str_upper(struct rt *rt, struct tv s);
struct tv str_lower(struct rt *rt, struct tv s);
struct tv str_title(struct rt *rt, struct tv s);		/* str.title() */
struct tv str_capitalize(struct rt *rt, struct tv s);
struct tv str_replace(struct rt *rt, struct tv s, struct tv old, struct tv new_, int64_t count);
struct tv str_split(struct rt *rt, struct tv s, struct tv sep, int64_t maxsplit, bool right);
struct tv str_splitlines(struct rt *rt, struct tv s, bool keepends);
/* jinja2's |wordwrap (Python textwrap with jinja2's settings), wordwrap.c */
struct tv str_wordwrap(struct rt *rt, struct tv s, int64_t width, bool break_long, struct tv wrap,
		       bool hyphens);
struct tv str_center(struct rt *rt, struct tv s, int64_t width, const char *fill, size_t filln);
struct tv str_join(struct rt *rt, struct tv sep, struct tlist *items);
struct tv str_percent_format(struct rt *rt, struct tv fmt, struct tv args);
struct tv str_escape_html(struct rt *rt, struct tv s);
uint32_t cp_upper(uint32_t c);
uint32_t cp_lower(uint32_t c);
uint32_t cp_title(uint32_t c);
bool cp_isalnum(uint32_t c);

/* ---- JSON ----------------------------------------------------------- */

/* Parse JSON text into a value in arena a.  Returns 0, or -EINVAL with a
 * message in err (size errn). */
int json_to_tv(struct arena *a, const char *s, size_t n, struct tv *out, char *err, size_t errn);
/* json.dumps(v, ensure_ascii, indent, separators, sort_keys). indent:
 * NULL for none; item_sep/key_sep NULL for the defaults. */
void tv_to_json(struct rt *rt, struct abuf *b, struct tv v, bool ensure_ascii,
		const char *indent, size_t indent_n, bool have_indent,
		const char *item_sep, const char *key_sep, bool sort_keys);

/* ---- compile -------------------------------------------------------- */

int tmpl_parse(struct tmpl *t, const char *src, size_t n, char *err, size_t errn);

#endif
