/*
 * schema.c - JSON Schema to grammar: the schema is translated to GBNF text
 * (one rule per schema node), string patterns to regex rules, and the
 * text parsed by the GBNF front end into the same builder.  JSON is
 * generated compact with ", " and ": " separators (xgrammar's
 * any_whitespace=False layout).  Supported keywords and their meaning:
 * docs/structured-output.md.
 */
#include "core/grammar/grammar_int.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

struct sc {
	struct gbuild *b;
	struct strbuf g;	/* the expression being written */
	struct strbuf rules;	/* finished rules, one a line */
	cJSON *root;
	unsigned flags;
	int n;			/* rules so far */
	int depth;
	struct { char *ref; int rule; } *refs;
	int n_refs;
	unsigned basics;	/* which basic rules are used */
};

enum { B_VALUE = 1, B_STRING = 2, B_NUMBER = 4, B_INTEGER = 8, B_CHAR = 16 };

static const char *const basic_text =
	"value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
	"object ::= \"{\" ( string \": \" value ( \", \" string \": \" value )* )? \"}\"\n"
	"array ::= \"[\" ( value ( \", \" value )* )? \"]\"\n"
	"string ::= \"\\\"\" char* \"\\\"\"\n"
	"char ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"
	"integer ::= \"0\" | \"-\"? [1-9] [0-9]*\n"
	"number ::= \"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [+-]? [0-9]+ )?\n";

static int gen(struct sc *c, const cJSON *s, const char *path);

/* A GBNF string literal for bytes s[0..n). */
static void lit(struct strbuf *g, const char *s, size_t n)
{
	sb_addch(g, '"');
	for (size_t i = 0; i < n; i++) {
		uint8_t ch = (uint8_t)s[i];
		if (ch == '"' || ch == '\\')
			sb_addf(g, "\\%c", ch);
		else if (ch < 0x20)
			sb_addf(g, "\\x%02x", ch);
		else
			sb_addch(g, (char)ch);
	}
	sb_addch(g, '"');
}

/* Compact JSON of v with xgrammar's separators. */
static void json_text(struct strbuf *o, const cJSON *v)
{
	if (cJSON_IsString(v)) {
		sb_add_json_str(o, v->valuestring, strlen(v->valuestring));
	} else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
		int obj = cJSON_IsObject(v), first = 1;
		const cJSON *it;
		sb_addch(o, obj ? '{' : '[');
		cJSON_ArrayForEach(it, v) {
			if (!first)
				sb_adds(o, ", ");
			first = 0;
			if (obj) {
				sb_add_json_str(o, it->string, strlen(it->string));
				sb_adds(o, ": ");
			}
			json_text(o, it);
		}
		sb_addch(o, obj ? '}' : ']');
	} else {
		char *t = cJSON_PrintUnformatted(v);
		sb_adds(o, t);
		cJSON_free(t);
	}
}

static int new_rule(struct sc *c)
{
	return c->n++;
}

static void basic(struct sc *c, unsigned which, const char *name)
{
	c->basics |= which;
	sb_adds(&c->g, name);
}

static int unsupported(struct sc *c, const char *path, const char *what)
{
	(void)c;
	return err_set(-EINVAL, "json schema: %s at %s is not supported", what, path);
}

static const char *const known[] = {
	"type", "properties", "required", "additionalProperties", "items", "minItems",
	"maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "minLength",
	"maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
	"exclusiveMaximum", "title", "description", "default", "examples", "$schema", "$id",
	"$comment", "$defs", "definitions", "deprecated", "readOnly", "writeOnly", "nullable",
	NULL,
};

static int check_keywords(struct sc *c, const cJSON *s, const char *path)
{
	const cJSON *it;
	if (c->flags & GRAMMAR_LENIENT)
		return 0;
	cJSON_ArrayForEach(it, s) {
		int ok = 0;
		for (int i = 0; known[i] && !ok; i++)
			ok = !strcmp(it->string, known[i]);
		if (!ok) {
			char what[160];
			snprintf(what, sizeof(what), "keyword '%.100s'", it->string);
			return unsupported(c, path, what);
		}
	}
	return 0;
}

/* ---- integers in a range ---------------------------------------------------- */

static int ndigits(unsigned long long v)
{
	int n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

static unsigned long long pow10u(int k)
{
	unsigned long long p = 1;
	while (k-- > 0)
		p *= 10;
	return p;
}

/* Alternatives for the decimal strings of lo..hi, equal digit counts n. */
static void same_len(struct strbuf *g, const char *lo, const char *hi, int n, int *first)
{
	int i = 0;
	while (i < n && lo[i] == hi[i])
		i++;
	if (!*first)
		sb_adds(g, " | ");
	*first = 0;
	if (i == n) {
		lit(g, lo, (size_t)n);
		return;
	}
	int lo0 = 1, hi9 = 1;
	for (int k = i + 1; k < n; k++) {
		lo0 &= lo[k] == '0';
		hi9 &= hi[k] == '9';
	}
	char mid[24];
	int start = lo[i], end = hi[i];
	if (!lo0) {
		memcpy(mid, lo, (size_t)n);
		memset(mid + i + 1, '9', (size_t)(n - i - 1));
		*first = 1;
		sb_adds(g, "( ");
		same_len(g, lo, mid, n, first);
		sb_adds(g, " )");
		start++;
	}
	if (start <= (hi9 ? end : end - 1)) {
		if (!lo0)
			sb_adds(g, " | ");
		sb_adds(g, "( ");
		if (i)
			lit(g, lo, (size_t)i);
		sb_addf(g, " [%c-%c]", start, hi9 ? end : end - 1);
		if (n - i - 1)
			sb_addf(g, " [0-9]{%d}", n - i - 1);
		sb_adds(g, " )");
	} else if (lo0 && !hi9 && start > end - 1) {
		*first = 1;	/* nothing in the middle: no separator owed */
	}
	if (!hi9) {
		memcpy(mid, hi, (size_t)n);
		memset(mid + i + 1, '0', (size_t)(n - i - 1));
		if (!*first)
			sb_adds(g, " | ");
		*first = 1;
		sb_adds(g, "( ");
		same_len(g, mid, hi, n, first);
		sb_adds(g, " )");
	}
	*first = 0;
}

/* Alternatives for lo..hi (0 <= lo <= hi; hi ULLONG_MAX: no upper bound). */
static void urange(struct strbuf *g, unsigned long long lo, unsigned long long hi, int *first)
{
	int unbounded = hi == ~0ull;
	while (lo <= hi) {
		int d = ndigits(lo);
		if (d >= 19) {
			if (!*first)
				sb_adds(g, " | ");
			*first = 0;
			sb_addf(g, "[1-9] [0-9]{%d,}", d - 1);
			return;
		}
		unsigned long long top = pow10u(d) - 1;
		if (unbounded && d > 1 && lo == pow10u(d - 1)) {
			if (!*first)
				sb_adds(g, " | ");
			*first = 0;
			sb_addf(g, "[1-9] [0-9]{%d,}", d - 1);
			return;
		}
		unsigned long long h = top < hi ? top : hi;
		char a[24], z[24];
		snprintf(a, sizeof(a), "%llu", lo);
		snprintf(z, sizeof(z), "%llu", h);
		same_len(g, a, z, d, first);
		if (h == hi)
			return;
		lo = h + 1;
	}
}

/* integer with optional bounds (has_lo/has_hi). */
static void int_range(struct sc *c, int has_lo, long long lo, int has_hi, long long hi)
{
	struct strbuf *g = &c->g;
	int first = 1;

	sb_adds(g, "( ");
	if (!has_lo || lo < 0) {	/* negative part: "-" then |v| in range */
		unsigned long long alo = has_hi && hi < -1 ? (unsigned long long)-(hi) : 1;
		unsigned long long ahi = has_lo ? (unsigned long long)-(lo) : ~0ull;
		if (!(has_hi && hi < -1) || alo <= ahi) {
			sb_adds(g, "\"-\" ( ");
			int f = 1;
			urange(g, alo, ahi, &f);
			sb_adds(g, " )");
			first = 0;
		}
	}
	if (!has_hi || hi >= 0) {
		unsigned long long plo = has_lo && lo > 0 ? (unsigned long long)lo : 0;
		unsigned long long phi = has_hi ? (unsigned long long)hi : ~0ull;
		urange(g, plo, phi, &first);
	}
	sb_adds(g, " )");
}

/* ---- the schema walk --------------------------------------------------------- */

static const cJSON *resolve(struct sc *c, const char *ref, const char *path)
{
	if (strncmp(ref, "#", 1)) {
		unsupported(c, path, "a $ref outside this document");
		return NULL;
	}
	const cJSON *at = c->root;
	const char *p = ref + 1;
	while (*p == '/') {
		const char *e = strchr(p + 1, '/');
		size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
		char key[256];
		size_t k = 0;
		for (size_t i = 0; i < n && k + 1 < sizeof(key); i++) {
			if (p[1 + i] == '~' && i + 1 < n && (p[2 + i] == '0' || p[2 + i] == '1')) {
				key[k++] = p[2 + i] == '0' ? '~' : '/';
				i++;
			} else {
				key[k++] = p[1 + i];
			}
		}
		key[k] = 0;
		at = cJSON_IsArray(at) ? cJSON_GetArrayItem(at, atoi(key))
				       : cJSON_GetObjectItemCaseSensitive(at, key);
		if (!at)
			break;
		p += 1 + n;
	}
	if (!at || *p)
		err_set(-EINVAL, "json schema: $ref '%.200s' at %s does not resolve", ref, path);
	return at && !*p ? at : NULL;
}

/* Generate s as the body of rule r (appended to the finished rules). */
static int define(struct sc *c, int r, const cJSON *s, const char *path)
{
	struct strbuf saved = c->g;
	sb_init(&c->g, 128);
	int rc = gen(c, s, path);
	if (rc == 0)
		sb_addf(&c->rules, "s%d ::= %.*s\n", r, (int)c->g.len, c->g.buf);
	sb_release(&c->g);
	c->g = saved;
	return rc;
}

static int gen_ref(struct sc *c, const char *ref, const char *path)
{
	for (int i = 0; i < c->n_refs; i++)
		if (!strcmp(c->refs[i].ref, ref)) {
			sb_addf(&c->g, "s%d", c->refs[i].rule);
			return 0;
		}
	const cJSON *t = resolve(c, ref, path);
	if (!t)
		return -EINVAL;
	int r = new_rule(c);
	c->refs = xrealloc(c->refs, (size_t)(c->n_refs + 1) * sizeof(*c->refs));
	c->refs[c->n_refs].ref = xstrdup(ref);
	c->refs[c->n_refs++].rule = r;
	sb_addf(&c->g, "s%d", r);
	return define(c, r, t, ref);
}

static int gen_string(struct sc *c, const cJSON *s, const char *path)
{
	const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
	const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minLength");
	const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxLength");
	static const struct { const char *name, *re; } formats[] = {
		{ "date", "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])" },
		{ "time", "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])" },
		{ "date-time", "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])" },
		{ "uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" },
		{ "ipv4", "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])" },
		{ "email", "[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}" },
	};
	const char *re = NULL;

	if (cJSON_IsString(pat)) {
		re = pat->valuestring;
	} else if (cJSON_IsString(fmt)) {
		for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]) && !re; i++)
			if (!strcmp(fmt->valuestring, formats[i].name))
				re = formats[i].re;
		if (!re && !(c->flags & GRAMMAR_LENIENT)) {
			char what[160];
			snprintf(what, sizeof(what), "format '%.100s'", fmt->valuestring);
			return unsupported(c, path, what);
		}
	}
	if (re) {
		if ((mn || mx) && !(c->flags & GRAMMAR_LENIENT))
			return unsupported(c, path, "minLength/maxLength with a pattern or format");
		uint32_t r;
		if (regex_parse(c->b, re, strlen(re), &r) < 0)
			return err_wrap(-EINVAL, "json schema: pattern at %s", path);
		char name[32];
		snprintf(name, sizeof(name), "pattern-%u", r);
		c->b->rules[r].name = xstrdup(name);
		sb_addf(&c->g, "\"\\\"\" %s \"\\\"\"", name);
		return 0;
	}
	if (!mn && !mx) {
		basic(c, B_STRING, "string");
		return 0;
	}
	long lo = cJSON_IsNumber(mn) ? (long)mn->valuedouble : 0;
	long hi = cJSON_IsNumber(mx) ? (long)mx->valuedouble : -1;
	if (lo < 0 || (hi >= 0 && hi < lo) || lo > 100000 || hi > 100000)
		return err_set(-EINVAL, "json schema: bad minLength/maxLength at %s", path);
	c->basics |= B_CHAR;
	if (hi < 0)
		sb_addf(&c->g, "\"\\\"\" char{%ld,} \"\\\"\"", lo);
	else
		sb_addf(&c->g, "\"\\\"\" char{%ld,%ld} \"\\\"\"", lo, hi);
	return 0;
}

static int bound(const cJSON *s, const char *key, const char *xkey, int upper, int integer,
		 long long *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, xkey);
	int has = 0;
	long long b = upper ? LLONG_MAX : LLONG_MIN;
	if (cJSON_IsNumber(v)) {
		double d = upper ? floor(v->valuedouble) : ceil(v->valuedouble);
		b = (long long)d;
		has = 1;
	}
	if (cJSON_IsNumber(x) && integer) {
		double d = x->valuedouble;
		long long e = upper ? (long long)ceil(d) - 1 : (long long)floor(d) + 1;
		if (!has || (upper ? e < b : e > b))
			b = e;
		has = 1;
	}
	*out = b;
	return has;
}

static int gen_number(struct sc *c, const cJSON *s, const char *path, int integer)
{
	long long lo, hi;
	int has_lo = bound(s, "minimum", "exclusiveMinimum", 0, 1, &lo);
	int has_hi = bound(s, "maximum", "exclusiveMaximum", 1, 1, &hi);

	if (!integer && (has_lo || has_hi)) {
		const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minimum");
		if (!has_hi && cJSON_IsNumber(mn) && mn->valuedouble == 0 &&
		    !cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum")) {
			sb_adds(&c->g, "( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [+-]? [0-9]+ )?");
			return 0;
		}
		if (!(c->flags & GRAMMAR_LENIENT))
			return unsupported(c, path, "a bound on a non-integer number (other than minimum 0)");
		basic(c, B_NUMBER, "number");
		return 0;
	}
	if (!has_lo && !has_hi) {
		basic(c, integer ? B_INTEGER : B_NUMBER, integer ? "integer" : "number");
		return 0;
	}
	if (has_lo && has_hi && lo > hi)
		return err_set(-EINVAL, "json schema: empty integer range at %s", path);
	int_range(c, has_lo, lo, has_hi, hi);
	return 0;
}

static int gen_array(struct sc *c, const cJSON *s, const char *path)
{
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
	const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minItems");
	const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
	long lo = cJSON_IsNumber(mn) ? (long)mn->valuedouble : 0;
	long hi = cJSON_IsNumber(mx) ? (long)mx->valuedouble : -1;
	char sub[512];

	if (cJSON_GetObjectItemCaseSensitive(s, "prefixItems") && !(c->flags & GRAMMAR_LENIENT))
		return unsupported(c, path, "prefixItems");
	if (lo < 0 || (hi >= 0 && hi < lo) || lo > 10000 || hi > 10000)
		return err_set(-EINVAL, "json schema: bad minItems/maxItems at %s", path);
	int r = new_rule(c), rc = 0;
	snprintf(sub, sizeof(sub), "%s/items", path);
	if (items) {
		rc = define(c, r, items, sub);
	} else {
		c->basics |= B_VALUE;
		sb_addf(&c->rules, "s%d ::= value\n", r);
	}
	if (rc < 0)
		return rc;
	if (hi == 0) {
		sb_adds(&c->g, "\"[]\"");
		return 0;
	}
	sb_adds(&c->g, "( \"[\" ");
	if (lo == 0)
		sb_adds(&c->g, "( ");
	sb_addf(&c->g, "s%d ( \", \" s%d )", r, r);
	long rlo = lo ? lo - 1 : 0, rhi = hi < 0 ? -1 : hi - 1;
	if (rhi < 0)
		sb_addf(&c->g, "{%ld,}", rlo);
	else
		sb_addf(&c->g, "{%ld,%ld}", rlo, rhi);
	if (lo == 0)
		sb_adds(&c->g, " )?");
	sb_adds(&c->g, " \"]\" )");
	return 0;
}

static int gen_object(struct sc *c, const cJSON *s, const char *path)
{
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
	const cJSON *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
	int n = cJSON_GetArraySize(props), rc;
	char sub[512];

	if (props && !cJSON_IsObject(props))
		return err_set(-EINVAL, "json schema: properties at %s must be an object", path);
	/* additional properties: allowed when additionalProperties says so, or
	 * when there are no properties and it is absent (any object) */
	int extra = add ? !cJSON_IsFalse(add) : !props;
	int base = c->n;
	c->n += 2 * (n + 1);	/* F_i, N_i for i = 0..n */
	const cJSON *p;
	int i = 0;
	/* F_i: the members from property i on, one was written before (each
	 * starts with a separator); N_i: the same, none written yet. */
	cJSON_ArrayForEach(p, props) {
		int required = 0;
		const cJSON *r;
		cJSON_ArrayForEach(r, req)
			if (cJSON_IsString(r) && !strcmp(r->valuestring, p->string))
				required = 1;
		int v = new_rule(c);
		snprintf(sub, sizeof(sub), "%s/properties/%.200s", path, p->string);
		if ((rc = define(c, v, p, sub)) < 0)
			return rc;
		struct strbuf key = STRBUF_INIT, kv = STRBUF_INIT;
		sb_add_json_str(&key, p->string, strlen(p->string));
		sb_adds(&key, ": ");
		lit(&kv, key.buf, key.len);
		sb_addf(&kv, " s%d", v);
		int F = base + 2 * i, N = F + 1, F1 = F + 2, N1 = F + 3;
		if (required) {
			sb_addf(&c->rules, "s%d ::= \", \" %s s%d\n", F, kv.buf, F1);
			sb_addf(&c->rules, "s%d ::= %s s%d\n", N, kv.buf, F1);
		} else {
			sb_addf(&c->rules, "s%d ::= \", \" %s s%d | s%d\n", F, kv.buf, F1, F1);
			sb_addf(&c->rules, "s%d ::= %s s%d | s%d\n", N, kv.buf, F1, N1);
		}
		sb_release(&key);
		sb_release(&kv);
		i++;
	}
	int F = base + 2 * n, N = F + 1;
	if (extra) {
		char v[16] = "value";
		if (cJSON_IsObject(add)) {
			int vr = new_rule(c);
			snprintf(sub, sizeof(sub), "%s/additionalProperties", path);
			if ((rc = define(c, vr, add, sub)) < 0)
				return rc;
			snprintf(v, sizeof(v), "s%d", vr);
		} else {
			c->basics |= B_VALUE;
		}
		c->basics |= B_STRING;
		sb_addf(&c->rules, "s%d ::= ( \", \" string \": \" %s )*\n", F, v);
		sb_addf(&c->rules, "s%d ::= ( string \": \" %s s%d )?\n", N, v, F);
	} else {
		sb_addf(&c->rules, "s%d ::= \"\"\ns%d ::= \"\"\n", F, N);
	}
	sb_addf(&c->g, "( \"{\" s%d \"}\" )", base + 1);
	return 0;
}

static int gen_type(struct sc *c, const cJSON *s, const char *type, const char *path)
{
	if (!strcmp(type, "string"))
		return gen_string(c, s, path);
	if (!strcmp(type, "integer"))
		return gen_number(c, s, path, 1);
	if (!strcmp(type, "number"))
		return gen_number(c, s, path, 0);
	if (!strcmp(type, "boolean")) {
		sb_adds(&c->g, "( \"true\" | \"false\" )");
		return 0;
	}
	if (!strcmp(type, "null")) {
		sb_adds(&c->g, "\"null\"");
		return 0;
	}
	if (!strcmp(type, "array"))
		return gen_array(c, s, path);
	if (!strcmp(type, "object"))
		return gen_object(c, s, path);
	return err_set(-EINVAL, "json schema: unknown type '%.50s' at %s", type, path);
}

static int gen_alts(struct sc *c, const cJSON *list, const char *path, const char *kw)
{
	const cJSON *it;
	int i = 0, rc;
	char sub[512];

	if (!cJSON_IsArray(list) || !cJSON_GetArraySize(list))
		return err_set(-EINVAL, "json schema: %s at %s must be a non-empty array", kw, path);
	sb_adds(&c->g, "( ");
	cJSON_ArrayForEach(it, list) {
		if (i)
			sb_adds(&c->g, " | ");
		snprintf(sub, sizeof(sub), "%s/%s/%d", path, kw, i++);
		if ((rc = gen(c, it, sub)) < 0)
			return rc;
	}
	sb_adds(&c->g, " )");
	return 0;
}

static int gen(struct sc *c, const cJSON *s, const char *path)
{
	int rc;

	if (cJSON_IsTrue(s)) {
		basic(c, B_VALUE, "value");
		return 0;
	}
	if (!cJSON_IsObject(s))
		return err_set(-EINVAL, "json schema: expected a schema object at %s", path);
	if (++c->depth > MAX_DEPTH)
		return err_set(-EINVAL, "json schema: nested deeper than %d at %s", MAX_DEPTH, path);
	if ((rc = check_keywords(c, s, path)) < 0)
		goto out;
	const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
	const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
	const cJSON *cn = cJSON_GetObjectItemCaseSensitive(s, "const");
	const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
	const cJSON *one = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
	const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
	if (cJSON_IsString(ref)) {
		rc = gen_ref(c, ref->valuestring, path);
	} else if (cn || en) {
		const cJSON *it;
		int first = 1;
		if (en && (!cJSON_IsArray(en) || !cJSON_GetArraySize(en))) {
			rc = err_set(-EINVAL, "json schema: enum at %s must be a non-empty array", path);
			goto out;
		}
		sb_adds(&c->g, "( ");
		for (it = cn ? cn : en->child; it; it = cn ? NULL : it->next) {
			struct strbuf t = STRBUF_INIT;
			json_text(&t, it);
			if (!first)
				sb_adds(&c->g, " | ");
			first = 0;
			lit(&c->g, t.buf, t.len);
			sb_release(&t);
		}
		sb_adds(&c->g, " )");
	} else if (any || one) {
		rc = gen_alts(c, any ? any : one, path, any ? "anyOf" : "oneOf");
	} else if (all) {
		if (!cJSON_IsArray(all) || cJSON_GetArraySize(all) != 1) {
			rc = unsupported(c, path, "allOf with more than one schema");
			goto out;
		}
		rc = gen(c, all->child, path);
	} else if (cJSON_IsString(type)) {
		rc = gen_type(c, s, type->valuestring, path);
	} else if (cJSON_IsArray(type)) {
		const cJSON *t;
		int first = 1;
		sb_adds(&c->g, "( ");
		cJSON_ArrayForEach(t, type) {
			if (!cJSON_IsString(t)) {
				rc = err_set(-EINVAL, "json schema: bad type at %s", path);
				goto out;
			}
			if (!first)
				sb_adds(&c->g, " | ");
			first = 0;
			if ((rc = gen_type(c, s, t->valuestring, path)) < 0)
				goto out;
		}
		sb_adds(&c->g, " )");
	} else if (type) {
		rc = err_set(-EINVAL, "json schema: bad type at %s", path);
	} else if (cJSON_GetObjectItemCaseSensitive(s, "properties")) {
		rc = gen_object(c, s, path);
	} else if (cJSON_GetObjectItemCaseSensitive(s, "items")) {
		rc = gen_array(c, s, path);
	} else {
		basic(c, B_VALUE, "value");
	}
out:
	c->depth--;
	return rc;
}

int schema_compile(struct gbuild *b, const char *json, size_t len, unsigned flags,
		   int calls, uint32_t *root)
{
	struct sc c = { .b = b, .flags = flags };
	int rc;

	c.root = cJSON_ParseWithLength(json, len);
	if (!c.root)
		return err_set(-EINVAL, "json schema: not valid JSON");
	sb_init(&c.g, 1024);
	sb_init(&c.rules, 1024);
	rc = gen(&c, c.root, "#");
	if (calls) {
		sb_addf(&c.rules, "call ::= \"<tool_call>\\n\" %.*s \"\\n</tool_call>\"\n",
			(int)c.g.len, c.g.buf);
		sb_adds(&c.rules, calls > 0 ? "root ::= call\n" : "root ::= call ( \"\\n\" call )*\n");
	} else {
		sb_addf(&c.rules, "root ::= %.*s\n", (int)c.g.len, c.g.buf);
	}
	sb_reset(&c.g);
	sb_add(&c.g, c.rules.buf, c.rules.len);
	if (rc == 0 && c.basics)
		sb_adds(&c.g, basic_text);	/* every basic rule: unused ones are harmless */
	if (rc == 0)
		rc = gbnf_parse(b, c.g.buf, c.g.len, root);
	if (rc < 0 && getenv("DYN_GRAMMAR_DEBUG"))
		fprintf(stderr, "%s\n", c.g.buf);
	for (int i = 0; i < c.n_refs; i++)
		free(c.refs[i].ref);
	free(c.refs);
	sb_release(&c.g);
	sb_release(&c.rules);
	cJSON_Delete(c.root);
	return rc;
}
