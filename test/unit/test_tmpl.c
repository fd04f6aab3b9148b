/*
 * test_tmpl.c - the chat-template engine (core/tmpl): rendering against
 * outputs of Python jinja2 configured as transformers configures it (each
 * expected string below was produced by jinja2 3.1 for the template and
 * variables next to it), error paths (syntax, unknown filters, sandbox,
 * type errors, raise_exception), the bounds on steps, output, memory and
 * nesting, time and work on long data, memory that follows the live data
 * (in-place growth), the chat-template helper (tokenizer_config.json
 * handling, template choice, continue_final_message), concurrent renders,
 * and the fuzz target's checks replayed on its seeds.
 */
#include "check.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

struct rcase {
	const char *src;
	const char *vars;	/* JSON object of variables, or NULL */
	const char *want;
};

/* Render src with vars; returns the text (malloc'ed) or NULL with *rc set. */
static char *render_opts(const char *src, const char *vars, const struct tmpl_render_opts *o, int *rc)
{
	struct tmpl *t;
	*rc = tmpl_compile(src, strlen(src), "t", &t);
	if (*rc < 0)
		return NULL;
	struct tmpl_vars *v = tmpl_vars_new();
	if (vars) {
		*rc = tmpl_vars_merge_json(v, vars, strlen(vars));
		if (*rc < 0) {
			tmpl_vars_free(v);
			tmpl_free(t);
			return NULL;
		}
	}
	struct strbuf out = STRBUF_INIT;
	*rc = tmpl_render(t, v, o, &out);
	tmpl_vars_free(v);
	tmpl_free(t);
	if (*rc < 0) {
		sb_release(&out);
		return NULL;
	}
	return sb_detach(&out, NULL);
}

static char *render(const char *src, const char *vars, int *rc)
{
	return render_opts(src, vars, NULL, rc);
}

static void run_cases(const struct rcase *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc;
		char *got = render(c[i].src, c[i].vars, &rc);
		if (!got)
			CHECK_FAIL("case %zu (%.60s): error %s", i, c[i].src, err_msg());
		int same = !strcmp(got, c[i].want);
		if (!same) {
			static char shown[300];
			snprintf(shown, sizeof(shown), "%s", got);
			free(got);
			CHECK_FAIL("case %zu (%.60s): got \"%.150s\", want \"%.150s\"", i, c[i].src,
				   shown, c[i].want);
		}
		free(got);
	}
}

/* src must fail (to compile or to render); the message must contain sub. */
static void expect_error(const char *src, const char *vars, const char *sub)
{
	int rc;
	char *got = render(src, vars, &rc);
	if (got) {
		static char shown[200];
		snprintf(shown, sizeof(shown), "%s", got);
		free(got);
		CHECK_FAIL("no error for %.80s (rendered \"%.100s\")", src, shown);
	}
	CHECK_MSG(rc < 0, "rc %d for %.80s", rc, src);
	if (sub && !strstr(err_msg(), sub))
		CHECK_FAIL("error for %.60s is \"%.200s\", expected it to mention \"%s\"", src, err_msg(), sub);
}

static const struct rcase whitespace_cases[] = {
	{ "a\n  {% if true %}\n    b\n  {% endif %}\nc\n",
	  NULL,
	  "a\n    b\nc" },
	{ "a  {%- if true -%}  b  {%- endif %}\n\nc",
	  NULL,
	  "ab\nc" },
	{ "  {{ 1 }}  {# c #}\n  {#- d -#}  x\n{% raw %}  {{ raw }} {% endraw"
	  " %}\n  {%+ if true %}y{% endif +%}\nz",
	  NULL,
	  "  1  x\n  {{ raw }}   y\nz" },
	{ "{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\n",
	  NULL,
	  "  1\n  2\n" },
	{ "\r\nwin\r\n{% if 1 %}\r\nx\r\n{% endif %}\r\n",
	  NULL,
	  "\nwin\nx\n" },
	{ "{{- 'a' -}}\n\n{{ 'b' }}\n\n\n",
	  NULL,
	  "ab\n\n" },
	{ "\t{% if true %}\tTAB{% endif %}|{{ 1 }}  {% if true %}kept{% endif"
	  " %}",
	  NULL,
	  "\tTAB|1  kept" },
	{ "x {%- raw -%} y {{ z }} {%- endraw -%} z",
	  NULL,
	  "xy {{ z }}z" },
	{ "{# multi\nline #}\n  after {#- trailing -#}   !",
	  NULL,
	  "  after!" },
	{ "{% if true %}\n\n  a\n{% endif %}",
	  NULL,
	  "\n  a\n" },
};

static const struct rcase expressions_cases[] = {
	{ "{{ 1/2 }} {{ 4/2 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 7 % -3 "
	  "}} {{ 2**10 }} {{ 2**-1 }} {{ 2**3**2 }} {{ -2**2 }}",
	  NULL,
	  "0.5 2.0 3 -4 2 -2 1024 0.5 64 4" },
	{ "{{ -7.5 % 2 }} {{ 7.5 // 2 }} {{ -7.5 // 2 }} {{ 0.1 + 0.2 }} {{ 1"
	  "e16 }} {{ 1.5e-5 }} {{ 1e-4 }} {{ 100.0 }} {{ -0.0 }} {{ 1/3 }} {{"
	  " 2.5 * 4 }}",
	  NULL,
	  "0.5 3.0 -4.0 0.30000000000000004 1e+16 1.5e-05 0.0001 100.0 -0.0 0"
	  ".3333333333333333 10.0" },
	{ "{{ 'ab' ~ 1 ~ none ~ true ~ [1] }}|{{ 'ab' + 'cd' }}|{{ [1] + [2] "
	  "}}|{{ (1,) + (2,) }}|{{ 'ab' * 3 }}|{{ 2 * [0] }}|{{ 'x' * -1 }}",
	  NULL,
	  "ab1NoneTrue[1]|abcd|[1, 2]|(1, 2)|ababab|[0, 0]|" },
	{ "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3]"
	  " }} {{ 1 == 1.0 }} {{ true == 1 }} {{ [1] == (1,) }} {{ {'a': 1} ="
	  "= {'a': 1} }} {{ none == none }}",
	  NULL,
	  "True False True True True True False True True" },
	{ "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1.0 "
	  "in [1] }} {{ 'z' not in 'abc' }} {{ 'x' in u }}",
	  NULL,
	  "True True True True True False" },
	{ "{{ 0 or 'a' }}|{{ 'a' and 0 }}|{{ none or [] }}|{{ u or 'd' }}|{{ "
	  "1 and 2 }}|{{ not 0 }}|{{ not 'x' }}",
	  NULL,
	  "a|0|[]|d|2|True|False" },
	{ "[{{ 'a' if false }}]{{ 'y' if 1 else 'n' }}{{ 'p' if 0 else 'q' if"
	  " 1 else 'r' }}",
	  NULL,
	  "[]yq" },
	{ "{{ 'h\303\251llo'[1] }} {{ 'h\303\251llo'[1:3] }} {{ 'h\303\251llo"
	  "'[::-1] }} {{ [1,2,3,4][1:] }} {{ [1,2,3,4][::2] }} {{ [1,2,3][-1]"
	  " }} {{ [1,2][5] }}|{{ 'abc'[-5:2] }}",
	  NULL,
	  "\303\251 \303\251l oll\303\251h [2, 3, 4] [1, 3] 3 |ab" },
	{ "{{ 1, 2 }} {{ (1,) }} {{ () }} {{ [] }} {{ {} }} {{ 'a' 'b' }} {{ "
	  "0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }} {{ 1e3 }}",
	  NULL,
	  "(1, 2) (1,) () [] {} ab 31 15 5 1000 1000.0" },
	{ "{{ true + true }} {{ 3 * true }} {{ 5 // 2.0 }} {{ 10 / 4 }} {{ -("
	  "3) }} {{ +4 }} {{ -1.5 }}",
	  NULL,
	  "2 3 2.0 2.5 -3 4 -1.5" },
};

static const struct rcase printing_cases[] = {
	{ "{{ x }}",
	  "{\"x\": [1, 1.0, \"a'b\", \"c\\\"d\", true, null, {\"k\": [1e+16, "
	  "1.5e-05, 0.1]}, \"tab\\there\\n\", \"\303\251\344\270\255\360\237\214"
	  "\215\", \"\342\200\213\\u0001\177\"]}",
	  "[1, 1.0, \"a'b\", 'c\"d', True, None, {'k': [1e+16, 1.5e-05, 0.1]}"
	  ", 'tab\\there\\n', '\303\251\344\270\255\360\237\214\215', '\\u200"
	  "b\\x01\\x7f']" },
	{ "{{ x }}|{{ x.a }}|{{ x.b }}|{{ x.c }}|{{ x.d }}",
	  "{\"x\": {\"a\": 12345678901234567890, \"b\": -0.0, \"c\": 1e+300, "
	  "\"d\": 123456789.125}}",
	  "{'a': 12345678901234567890, 'b': -0.0, 'c': 1e+300, 'd': 123456789"
	  ".125}|12345678901234567890|-0.0|1e+300|123456789.125" },
	{ "{{ none }} {{ true }} {{ false }} {{ u }} [{{ u }}] {{ [u2] }}",
	  NULL,
	  "None True False  [] [Undefined]" },
	{ "{% set ns = namespace(a=1, b='x') %}{{ ns }}|{{ (1, 'a') }}|{{ {'k"
	  "': (1,)} }}|{% macro m() %}{% endmacro %}{{ m }}",
	  NULL,
	  "<Namespace {'a': 1, 'b': 'x'}>|(1, 'a')|{'k': (1,)}|<Macro 'm'>" },
	/* an empty print tag prints nothing (it once read an unset value) */
	{ "{% print %}x{% print 'a', 1 %}{% print %}", NULL, "xa1" },
};

static const struct rcase scoping_cases[] = {
	{ "{% set x = 0 %}{% for i in range(3) %}{{ x }}{% set x = i %}{{ x }"
	  "}{% endfor %}[{{ x }}]",
	  NULL,
	  "000102[0]" },
	{ "{% for i in range(3) %}{% if i == 0 %}{% set y = 'set' %}{% endif "
	  "%}[{{ y }}]{% endfor %}",
	  NULL,
	  "[set][][]" },
	{ "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}{% fo"
	  "r i in [1] %}{% set x = 3 %}{% endfor %}{{ x }}",
	  NULL,
	  "22" },
	{ "{% macro m() %}{{ z }}{% endmacro %}{% set z = 1 %}{{ m() }}{% set"
	  " z = 2 %}{{ m() }}{% for z in [9] %}{{ m() }}{% endfor %}",
	  NULL,
	  "122" },
	{ "{% set ns = namespace(n=0, items=[]) %}{% for i in range(4) %}{% s"
	  "et ns.n = ns.n + i %}{% set ns.items = ns.items + [i] %}{% endfor "
	  "%}{{ ns.n }} {{ ns.items }}",
	  NULL,
	  "6 [0, 1, 2, 3]" },
	{ "{% set ns = namespace() %}{% set ns.late = 'ok' %}{{ ns.late }}{% "
	  "set ns2 = namespace({'a': 1}, b=2) %}{{ ns2.a }}{{ ns2.b }}",
	  NULL,
	  "ok12" },
	{ "{% with a = 1, b = 2 %}{{ a + b }}{% set c = 3 %}{% endwith %}[{{ "
	  "a }}{{ c }}]",
	  NULL,
	  "3[]" },
	{ "{% set i = 9 %}{% for i in [1] %}{% endfor %}{{ i }}|{% for i in ["
	  "1,2] %}{% set last = i %}{% endfor %}[{{ last }}]",
	  NULL,
	  "9|[]" },
	{ "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set (c, d) = 'xy' %}{{ c }}{"
	  "{ d }}{% set x %}block {{ a }}{% endset %}{{ x }}|{% set y | upper"
	  " %}up{% endset %}{{ y }}",
	  NULL,
	  "12xyblock 1|UP" },
};

static const struct rcase loops_cases[] = {
	{ "{% for x in [1,2,3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.rev"
	  "index }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop"
	  ".length }}{{ loop.depth }}{{ loop.depth0 }};{% endfor %}",
	  NULL,
	  "1032TrueFalse310;2121FalseFalse310;3210FalseTrue310;" },
	{ "{% for x in [1,2,3] %}{{ loop.previtem }}|{{ loop.nextitem }}|{{ l"
	  "oop.cycle('a', 'b') }};{% endfor %}",
	  NULL,
	  "|2|a;1|3|b;2||a;" },
	{ "{% for x in range(10) if x is odd %}{{ x }}@{{ loop.index }}{% if "
	  "not loop.last %},{% endif %}{% else %}none{% endfor %}|{% for x in"
	  " [] %}a{% else %}empty{% endfor %}",
	  NULL,
	  "1@1,3@2,5@3,7@4,9@5|empty" },
	{ "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfo"
	  "r %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}{% for c in "
	  "'h\303\251y' %}{{ c }}.{% endfor %}",
	  NULL,
	  "a=1;b=2;xyh.\303\251.y." },
	{ "{% for i in range(6) %}{% if i == 4 %}{% break %}{% endif %}{% if "
	  "i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}",
	  NULL,
	  "023" },
	{ "{% for x in items recursive %}{{ x.n }}{% if x.c %}[{{ loop(x.c) }"
	  "}]{% endif %}{{ loop.depth }}{% endfor %}",
	  "{\"items\": [{\"n\": \"a\", \"c\": [{\"n\": \"b\", \"c\": [{\"n\":"
	  " \"c\"}]}]}, {\"n\": \"d\"}]}",
	  "a[b[c3]2]1d1" },
	{ "{% for x in [1, 1, 2, 3, 3] %}{% if loop.changed(x) %}{{ x }}{% en"
	  "dif %}{% endfor %}|{% for a, b in [[1, 2], (3, 4)] %}{{ a * b }}{%"
	  " endfor %}",
	  NULL,
	  "123|212" },
	{ "{% for x in u %}a{% endfor %}ok{% for i in range(3, 0, -1) %}{{ i "
	  "}}{% endfor %}",
	  NULL,
	  "ok321" },
};

static const struct rcase macros_cases[] = {
	{ "{% macro m(a, b=a ~ '!') %}{{ a }}{{ b }}{{ varargs }}{% endmacro "
	  "%}{{ m(1) }}|{{ m(1, 2, 3) }}|{{ m(b='x', a='y') }}",
	  NULL,
	  "11!()|12(3,)|yx()" },
	{ "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}{% macro k(x=1) %}"
	  "{{ x }}{{ kwargs }}{% endmacro %}{{ k(z=2) }}",
	  NULL,
	  "[]1{'z': 2}" },
	{ "{% macro list(items) %}<ul>{% for i in items %}<li>{{ caller(i) }}"
	  "</li>{% endfor %}</ul>{% endmacro %}{% call(item) list([1, 2]) %}["
	  "{{ item * 10 }}]{% endcall %}",
	  NULL,
	  "<ul><li>[10]</li><li>[20]</li></ul>" },
	{ "{% macro outer(x) %}{% macro inner(y) %}{{ x }}-{{ y }}{% endmacro"
	  " %}{{ inner(x * 2) }}{% endmacro %}{{ outer(3) }}|{{ outer(3)|leng"
	  "th }}",
	  NULL,
	  "3-6|3" },
	{ "{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% e"
	  "ndmacro %}{{ r(5) }}|{{ r.name }}",
	  NULL,
	  "54321|r" },
	{ "{% set ns = namespace(v=0) %}{% macro inc() %}{% set ns.v = ns.v +"
	  " 1 %}{% endmacro %}{{ inc() }}{{ inc() }}{{ ns.v }}",
	  NULL,
	  "2" },
	{ "{% filter upper %}hello {{ 'world' }}{% endfilter %}|{% generation"
	  " %}gen {{ 1 }}{% set g = 2 %}{% endgeneration %}[{{ g }}]",
	  NULL,
	  "HELLO WORLD|gen 1[]" },
};

static const struct rcase filters_cases[] = {
	{ "{{ [3, 1, 2]|sort }}{{ ['b', 'A', 'a']|sort }}{{ ['b', 'A', 'a']|s"
	  "ort(case_sensitive=true) }}{{ [1, 3, 2]|sort(reverse=true) }}{{ x|"
	  "sort(attribute='n')|map(attribute='n')|list }}",
	  "{\"x\": [{\"n\": 2}, {\"n\": 1}]}",
	  "[1, 2, 3]['A', 'a', 'b']['A', 'a', 'b'][3, 2, 1][1, 2]" },
	{ "{{ ['b', 'A', 'a']|unique|list }}{{ {'b': 1, 'A': 2}|dictsort }}{{"
	  " {'b': 1, 'a': 2}|dictsort(by='value', reverse=true) }}{{ [1, 2, 1"
	  "]|unique|list }}",
	  NULL,
	  "['b', 'A'][('A', 2), ('b', 1)][('a', 2), ('b', 1)][1, 2]" },
	{ "{{ x|map(attribute='a')|list }}{{ x|selectattr('a')|list }}{{ x|re"
	  "jectattr('a')|list }}{{ x|map(attribute='a', default=0)|list }}{{ "
	  "x|selectattr('a', 'equalto', 1)|list|length }}",
	  "{\"x\": [{\"a\": 1}, {\"b\": 2}]}",
	  "[1, Undefined][{'a': 1}][{'b': 2}][1, 0]1" },
	{ "{{ x|select|list }}|{{ x|reject('odd')|list }}|{{ x|select('greate"
	  "rthan', 2)|list }}|{{ x|map('string')|join(',') }}|{{ x|sum }}|{{ "
	  "x|max }}|{{ x|min }}|{{ x|first }}|{{ x|last }}|{{ x|length }}|{{ "
	  "x|count }}|{{ x|reverse|list }}|{{ x|batch(2)|list }}|{{ x|slice(2"
	  ")|list }}",
	  "{\"x\": [0, 1, 2, 3, 4]}",
	  "[1, 2, 3, 4]|[0, 2, 4]|[3, 4]|0,1,2,3,4|10|4|0|0|4|5|5|[4, 3, 2, 1"
	  ", 0]|[[0, 1], [2, 3], [4]]|[[0, 1, 2], [3, 4]]" },
	{ "{{ 'hello world'|center(21) }}|{{ 'ab'|center(5) }}|{{ 'hello-worl"
	  "d (x)'|title }}|{{ 'hELLO wORLD'|capitalize }}|{{ 'MiXeD'|lower }}"
	  "{{ 'MiXeD'|upper }}|{{ '\303\237\303\251'|upper }}|{{ '  x  '|trim"
	  " }}|{{ 'xxaxx'|trim('x') }}",
	  NULL,
	  "     hello world     |  ab |Hello-World (X)|Hello world|mixedMIXED"
	  "|SS\303\211|x|a" },
	{ "{{ '  a\n b'|indent(2) }}|{{ 'a\n\nb'|indent(2, true) }}|{{ 'a\n\n"
	  "b\n'|indent(2, blank=true) }}|{{ 'x\ny'|indent('> ') }}",
	  NULL,
	  "  a\n   b|  a\n\n  b|a\n  \n  b\n  |x\n> y" },
	{ "{{ 3|round }} {{ 2.5|round }} {{ 2.675|round(2) }} {{ 3.14159|roun"
	  "d(2, 'floor') }} {{ 1.21|round(1, 'ceil') }} {{ '3.7'|int }} {{ 'x"
	  "'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '0x1A'|int(base=16) }} "
	  "{{ '12'|float }} {{ 'abc'|float }} {{ -3|abs }} {{ ' 12 '|int }} {"
	  "{ '1_000'|int }}",
	  NULL,
	  "3 2.0 2.67 3.14 1.3 3 0 7 3 26 12.0 0.0 3 12 1000" },
	{ "{{ 'Hello World'|wordcount }} {{ 'abc'|replace('b', 'X') }} {{ 'aa"
	  "a'|replace('a', 'b', 2) }} {{ 'x'|default('d') }} {{ u|default('d'"
	  ") }} {{ ''|default('d', true) }} {{ none|string }} {{ 1.5|string }"
	  "} {{ u|d('short') }}",
	  NULL,
	  "2 aXc bba x d d None 1.5 short" },
	{ "{{ 'a b/c'|urlencode }} {{ {'a': 'x y', 'b': '&'}|urlencode }} {{ "
	  "123456789|filesizeformat }} {{ 1024|filesizeformat(true) }} {{ '<b"
	  ">x</b> &amp; y'|striptags }}{{ {'a': 1, 'b': none}|xmlattr }}",
	  NULL,
	  "a%20b/c a=x+y&b=%26 123.5 MB 1.0 KiB x & y a=\"1\"" },
	{ "{{ 'long text here to truncate'|truncate(10) }}|{{ 'long text here"
	  "'|truncate(9, true) }}|{{ [1, 2, 3]|join }}|{{ ['a', 'b']|join('-'"
	  ") }}|{{ 'ab'|list }}|{{ {'a': 1}|list }}|{{ {'a': 1}|items|list }}"
	  "|{{ '%s=%d'|format('k', 3) }}",
	  NULL,
	  "long...|long text here|123|a-b|['a', 'b']|['a']|[('a', 1)]|k=3" },
	{ "{{ '<i>'|e }}{{ '<i>'|escape }}{{ ('<b>'|safe) + '<i>' }}|{{ ('<b>"
	  "'|safe) ~ '<i>' }}|{{ '<b>'|safe is escaped }}|{{ 'x'|attr('upper'"
	  ")() }}|{{ x|groupby('t') }}",
	  "{\"x\": [{\"t\": \"b\"}, {\"t\": \"a\"}, {\"t\": \"B\"}]}",
	  "&lt;i&gt;&lt;i&gt;<b>&lt;i&gt;|<b><i>|True|X|[('a', [{'t': 'a'}]),"
	  " ('b', [{'t': 'b'}, {'t': 'B'}])]" },
};

static const struct rcase tests_cases[] = {
	{ "{{ 5 is divisibleby 5 }}{{ 6 is divisibleby(4) }}{{ 3 is odd }}{{ "
	  "4 is even }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 1 is number"
	  " }}{{ 1.0 is float }}{{ true is number }}{{ true is integer }}{{ 1"
	  " is integer }}",
	  NULL,
	  "TrueFalseTrueTrueTrueTrueTrueTrueTrueFalseTrue" },
	{ "{{ 'x' is string }}{{ {} is mapping }}{{ [] is sequence }}{{ 'x' i"
	  "s iterable }}{{ 1 is iterable }}{{ none is none }}{{ true is true "
	  "}}{{ false is false }}{{ 0 is false }}{{ true is boolean }}{{ 'upp"
	  "er' is filter }}{{ 'odd' is test }}{{ range is callable }}",
	  NULL,
	  "TrueTrueTrueTrueFalseTrueTrueTrueFalseTrueTrueTrueTrue" },
	{ "{{ 1 is in [1] }}{{ 1 is eq 1 }}{{ 2 is gt 1 }}{{ 2 is lt 1 }}{{ 2"
	  " is ge 2 }}{{ 2 is le 1 }}{{ 1 is ne 1 }}{{ u is defined }}{{ u is"
	  " undefined }}{{ u is iterable }}{{ u is sequence }}{{ x is sameas "
	  "false }}{{ none is sameas none }}",
	  "{\"x\": false}",
	  "TrueTrueTrueFalseTrueFalseFalseFalseTrueTrueTrueTrueTrue" },
	{ "{{ (x|map('upper')) is sequence }}{{ x|map('upper') is iterable }}"
	  "{% if x|select('odd') %}gen-true{% endif %}{% if [] %}no{% endif %"
	  "}",
	  "{\"x\": []}",
	  "FalseTruegen-true" },
};

static const struct rcase methods_cases[] = {
	{ "{{ 'Hello'.startswith('He') }}{{ 'Hello'.startswith(('x', 'H')) }}"
	  "{{ 'Hello'.endswith('lo', 0, 4) }}{{ 'a-b-c'.split('-', 1) }}{{ 'a"
	  "-b-c'.rsplit('-', 1) }}{{ '  a b  '.split(None, 1) }}{{ '  a b  c "
	  "'.rsplit(None, 1) }}{{ ' a  b '.split() }}",
	  NULL,
	  "TrueTrueFalse['a', 'b-c']['a-b', 'c']['a', 'b  ']['  a b', 'c']['a"
	  "', 'b']" },
	{ "{{ 'abcabc'.find('c') }}{{ 'abcabc'.rfind('c') }}{{ 'abcabc'.count"
	  "('b') }}{{ 'abc'.index('c') }}{{ 'x'.center(5, '*') }}{{ 'x'.ljust"
	  "(3, '-') }}{{ 'x'.rjust(3) }}{{ '-5'.zfill(4) }}{{ '123'.isdigit()"
	  " }}{{ 'abc'.isalpha() }}{{ 'Ab'.islower() }}{{ 'AB'.isupper() }}{{"
	  " 'Hello World'.istitle() }}",
	  NULL,
	  "2522**x**x--  x-005TrueTrueFalseTrueTrue" },
	{ "{{ 'a=b=c'.partition('=') }}{{ 'a=b=c'.rpartition('=') }}{{ 'x\ny\r"
	  "\nz'.splitlines() }}{{ 'prefix_x'.removeprefix('prefix_') }}{{ 'he"
	  "llo world'.title() }}{{ 'HeLLo'.swapcase() }}{{ ','.join(['a', 'b'"
	  "]) }}{{ '\n\nx\n'.strip('\n') }}{{ 'xyx'.lstrip('x') }}{{ 'a b'.re"
	  "place(' ', '_') }}",
	  NULL,
	  "('a', '=', 'b=c')('a=b', '=', 'c')['x', 'y', 'z']xHello WorldhEllO"
	  "a,bxyxa_b" },
	{ "{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 5) }}{{ d.keys()|lis"
	  "t }}{{ d.values()|list }}{{ d.items()|list }}{{ d['a'] }}{{ d.a }}"
	  "{{ d.missing is defined }}{{ [1, 2, 1].count(1) }}{{ [1, 2].index("
	  "2) }}",
	  "{\"d\": {\"a\": 1, \"b\": [2]}}",
	  "1None5['a', 'b'][1, [2]][('a', 1), ('b', [2])]11False21" },
	{ "{{ x.items is defined }}{{ x['items'] }}{{ x.get('items') }}{{ '%s"
	  "-%05.2f-%r-%x' % ('a', 2.5, 'q', 255) }}|{{ '%(k)s' % {'k': 'v'} }"
	  "}|{{ '{} {:>4} {name}'.format(1, 'ab', name='n') }}",
	  "{\"x\": {\"items\": 5}}",
	  "True55a-02.50-'q'-ff|v|1   ab n" },
};

static const struct rcase tojson_cases[] = {
	{ "{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ x|tojson(separators=(',"
	  "', ':')) }}|{{ x|tojson(sort_keys=true) }}|{{ x|tojson(ensure_asci"
	  "i=true) }}",
	  "{\"x\": {\"z\": [1, 2.5, 1e-07, 1e+16, 0.1, -0.0, 100.0, \"\303\251"
	  "\\n\\\"<>&'\342\200\250\\u0001\360\237\214\215\", true, null, {}, "
	  "[]], \"a\": {\"n\": {\"d\": \"x\"}}}}",
	  "{\"z\": [1, 2.5, 1e-07, 1e+16, 0.1, -0.0, 100.0, \"\303\251\\n\\\""
	  "<>&'\342\200\250\\u0001\360\237\214\215\", true, null, {}, []], \""
	  "a\": {\"n\": {\"d\": \"x\"}}}|{\n  \"z\": [\n    1,\n    2.5,\n   "
	  " 1e-07,\n    1e+16,\n    0.1,\n    -0.0,\n    100.0,\n    \"\303\251"
	  "\\n\\\"<>&'\342\200\250\\u0001\360\237\214\215\",\n    true,\n    "
	  "null,\n    {},\n    []\n  ],\n  \"a\": {\n    \"n\": {\n      \"d\""
	  ": \"x\"\n    }\n  }\n}|{\"z\":[1,2.5,1e-07,1e+16,0.1,-0.0,100.0,\""
	  "\303\251\\n\\\"<>&'\342\200\250\\u0001\360\237\214\215\",true,null"
	  ",{},[]],\"a\":{\"n\":{\"d\":\"x\"}}}|{\"a\": {\"n\": {\"d\": \"x\""
	  "}}, \"z\": [1, 2.5, 1e-07, 1e+16, 0.1, -0.0, 100.0, \"\303\251\\n\\"
	  "\"<>&'\342\200\250\\u0001\360\237\214\215\", true, null, {}, []]}|"
	  "{\"z\": [1, 2.5, 1e-07, 1e+16, 0.1, -0.0, 100.0, \"\\u00e9\\n\\\"<"
	  ">&'\\u2028\\u0001\\ud83c\\udf0d\", true, null, {}, []], \"a\": {\""
	  "n\": {\"d\": \"x\"}}}" },
	{ "{{ [1, (2, 3), 'x']|tojson(indent='\t') }}|{{ {'a': none}|tojson }"
	  "}|{{ 'str'|tojson }}|{{ 5|tojson }}|{{ {1: 'int key', true: 'bool "
	  "key'}|tojson }}",
	  NULL,
	  "[\n\t1,\n\t[\n\t\t2,\n\t\t3\n\t],\n\t\"x\"\n]|{\"a\": null}|\"str\""
	  "|5|{\"1\": \"bool key\"}" },
};

/* Differences that random differential testing against jinja2 found. */
static const struct rcase regression_cases[] = {
	{ "{% macro m(a, b=b) %}<{{ a }}|{{ b }}>{% endmacro %}{{ m(1) }}{% macro k(a=c, b=a, c=3) %}{{ a }}{{ b }}{{ c }}{% endmacro %}|{{ k() }}|{{ k(1) }}|{{ k(c=5) }}",
	  "{\"b\": true, \"c\": 9}",
	  "<1|>|3|113|555" },
	{ "{{ [1, 2, 3]|sort(attribute='n')|list }}|{{ x|sort(attribute='t,a')|map(attribute='a')|list }}|{{ ['b', 'a']|sort(attribute='missing')|first }}",
	  "{\"x\": [{\"a\": 2, \"t\": \"y\"}, {\"a\": 1, \"t\": \"y\"}, {\"a\": 3, \"t\": \"x\"}]}",
	  "[1, 2, 3]|[3, 1, 2]|b" },
	{ "{{ [1, 2]|truncate(5) }}|{{ 'abcdefghijkl'|truncate(9) }}|{{ 'one two three four'|truncate(12) }}",
	  NULL,
	  "[1, 2]|abcdefghijkl|one two..." },
	{ "{{ \"abc\" % [1, 2] }}|{{ \"%s\" % [1, 2] }}|{{ \"abc\" % {\"a\": 1} }}|{{ \"%s\" % {\"a\": 1} }}|{{ \"%x|%+05d|%#o\" % (-255, 7, 8) }}",
	  NULL,
	  "abc|[1, 2]|abc|{'a': 1}|-ff|+0007|0o10" },
	{ "{{ 'x'|indent(2, true) }}|{{ ('a', 'b')[::-1] }}|{{ 'abc'[5:] }}|{{ [1, 2, 3][-2:] }}",
	  NULL,
	  "  x|('b', 'a')||[2, 3]" },
};

/* Python's str.lower() (and capitalize, title, swapcase) turns a capital
 * sigma at the end of a word into the final form. */
static const struct rcase final_sigma_cases[] = {
	{ "{{ 'ΣΑΣ'.lower() }}|{{ 'ΣΑΣ'|lower }}|{{ 'ΣΑΣ'|capitalize }}|{{ 'ΣΑΣ'.capitalize() }}", NULL, "σας|σας|Σας|Σας" },
	{ "{{ 'ΟΔΥΣΣΕΥΣ ΣΑΣ.'|lower }}|{{ 'ΑΣ-ΑΣ ΑΣ'|title }}|{{ 'ΑΣ-ΑΣ ΑΣ'.title() }}|{{ 'ΑΣ'.swapcase() }}", NULL, "οδυσσευς σας.|Ασ-Ασ Ασ|Ας-Ας Ας|ας" },
	{ "{{ 'Σ'|lower }}|{{ ' Σ '.lower() }}|{{ 'A.Σ'.lower() }}|{{ \"A'Σ'\".lower() }}|{{ \"AΣ'B\".lower() }}|{{ 'AΣ1'.lower() }}|{{ 'ΑΣ́'.lower() }}", NULL, "σ| σ |a.ς|a'ς'|aσ'b|aς1|ας́" },
	{ "{{ x|lower }}|{{ x.capitalize() }}|{{ x|title }}", "{\"x\": \"ⅫΣ ªΣ ΣΣΣ ΣΑ\\u0301Σ\\u0301Σ\"}", "ⅻς ªς σσς σάσ́ς|Ⅻς ªς σσς σάσ́ς|Ⅻσ ªσ Σσς Σάσ́ς" },
};

/* Second audit: str.format grouping, |attr looking up attributes only
 * (not dict items), str.expandtabs and int.bit_length. */
static const struct rcase audit2_cases[] = {
	{ "{{ '{:,}'.format(1234567.5) }}|{{ '{:,}'.format(-1e16) }}|{{ '{:_}'.format(0.5) }}|{{ '{:>12,}'.format(-9876.25) }}|{{ '{:,}'.format(True) }}", NULL, "1,234,567.5|-1e+16|0.5|   -9,876.25|1" },
	{ "{{ '{:,}'.format(1234567) }}|{{ '{:_}'.format(-1234567) }}|{{ '{:,.2f}'.format(1234567.891) }}|{{ '{:>12,}'.format(1234) }}|{{ '{:,}'.format(123) }}|{{ '{:+,d}'.format(1000) }}|{{ '{0:,} {1}'.format(1000000, 'x') }}", NULL, "1,234,567|-1_234_567|1,234,567.89|       1,234|123|+1,000|1,000,000 x" },
	{ "{{ messages[0]|attr('role') }}|{{ messages[0]|attr('items') is defined }}|{{ messages[0].role }}|{{ messages[0]['role'] }}|{{ messages[0]|attr('missing') }}|{{ 'abc'|attr('upper') is callable }}", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", "|True|user|user||True" },
	{ "{{ 'a\\tbc\\tdef\\tg'.expandtabs() }}|{{ 'a\\tb\n\\tc'.expandtabs(4) }}|{{ 'ab\\tc'.expandtabs(0) }}|{{ 'é\\tx'.expandtabs(3) }}|{{ '\\t'.expandtabs(tabsize=2) }}", NULL, "a       bc      def     g|a   b\n    c|abc|é  x|  " },
	{ "{{ (0).bit_length() }}|{{ (255).bit_length() }}|{{ (-256).bit_length() }}|{{ true.bit_length() }}|{{ x.bit_length() }}", "{\"x\": 9007199254740993}", "0|8|9|1|54" },
};

/* |wordwrap: Python's textwrap as jinja2 calls it (breaks after hyphens
 * between letters and around em-dashes, long words split, whitespace
 * dropped at the breaks, each input line wrapped on its own). */
static const struct rcase wordwrap_cases[] = {
	{ "{{ t|wordwrap }}", "{\"t\": \"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam.\"}", "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\nincididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam." },
	{ "{{ t|wordwrap(10) }}#{{ t|wordwrap(5) }}#{{ t|wordwrap(1) }}", "{\"t\": \"the quick brown fox   jumps\\n\\n  over the lazy dog  \"}", "the quick\nbrown fox\njumps\n\n  over the\nlazy dog#the\nquick\nbrown\nfox\njumps\n\nover\nthe\nlazy\ndog#t\nh\ne\nq\nu\ni\nc\nk\nb\nr\no\nw\nn\nf\no\nx\nj\nu\nm\np\ns\n\n \no\nv\ne\nr\nt\nh\ne\nl\na\nz\ny\nd\no\ng" },
	{ "{{ t|wordwrap(12) }}#{{ t|wordwrap(12, break_on_hyphens=false) }}#{{ t|wordwrap(7) }}", "{\"t\": \"a well-known long-term state-of-the-art x-ray well--known e-mail\"}", "a well-known\nlong-term\nstate-of-\nthe-art\nx-ray well--\nknown e-mail#a well-known\nlong-term st\nate-of-the-a\nrt x-ray\nwell--known\ne-mail#a well-\nknown\nlong-\nterm\nstate-\nof-the-\nart\nx-ray\nwell--\nknown\ne-mail" },
	{ "{{ t|wordwrap(6) }}#{{ t|wordwrap(6, false) }}#{{ t|wordwrap(6, wrapstring='<br>') }}", "{\"t\": \"supercalifragilistic ok antidisestablishment-ism\"}", "superc\nalifra\ngilist\nic ok \nantidi\nsestab\nlishme\nnt-ism#supercalifragilistic\nok\nantidisestablishment-\nism#superc<br>alifra<br>gilist<br>ic ok <br>antidi<br>sestab<br>lishme<br>nt-ism" },
	{ "{{ t|wordwrap(8) }}", "{\"t\": \"tab\\there  and\\ttabs; café ΣΑΣ naïve\"}", "tab\there\nand\ntabs;\ncafé ΣΑΣ\nnaïve" },
	{ "{{ ''|wordwrap }}|{{ '   '|wordwrap(2) }}|{{ 'a\\r\nb'|wordwrap }}", NULL, "||a\nb" },
};

#define RUN(group) run_cases(group##_cases, sizeof(group##_cases) / sizeof(group##_cases[0]))

TEST(whitespace_control) { RUN(whitespace); }
TEST(expressions) { RUN(expressions); }
TEST(printing_python_values) { RUN(printing); }
TEST(scoping) { RUN(scoping); }
TEST(loops) { RUN(loops); }
TEST(macros_and_blocks) { RUN(macros); }
TEST(filters) { RUN(filters); }
TEST(tests) { RUN(tests); }
TEST(methods) { RUN(methods); }
TEST(tojson) { RUN(tojson); }
TEST(regressions) { RUN(regression); }
TEST(final_sigma) { RUN(final_sigma); }
TEST(audit2) { RUN(audit2); }
TEST(wordwrap) { RUN(wordwrap); }

/* Templates jinja2 refuses to compile. */
TEST(compile_errors)
{
	static const struct { const char *src, *sub; } bad[] = {
		{ "{% if x %}", "Unexpected end of template" },
		{ "{% for x in y %}{% endif %}", "unknown tag 'endif'" },
		{ "{{ 1 + }}", NULL },
		{ "{% foo %}", "unknown tag 'foo'" },
		{ "{{ x|nofilter }}", "No filter named 'nofilter'" },
		{ "{{ 1 is nosuchtest }}", "No test named 'nosuchtest'" },
		{ "{% break %}", "outside loop" },
		{ "{% for x in [1] %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}", "outside loop" },
		{ "{{ 'unterminated }}", NULL },
		{ "{# never closed", "comment" },
		{ "{% raw %} no end", "raw" },
		{ "{{ (1 }}", NULL },
		{ "{{ [1, 2) }}", NULL },
		{ "{% set 1 = 2 %}", NULL },
		{ "{% macro m(a=1, b) %}{% endmacro %}", "non-default argument" },
		{ "{% call foo %}{% endcall %}", "expected call" },
		{ "{{ x is defined is string }}", "chain" },
		{ "{% include 'x' %}", "include" },
		{ "{{ 1 }} {% endfor %}", "endfor" },
		{ "{% for %}{% endfor %}", NULL },
		{ "{{ }}", NULL },
		{ "{% for x in [1] %}{% generation %}{% break %}{% endgeneration %}{% endfor %}", "outside loop" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tmpl *t = NULL;
		int rc = tmpl_compile(bad[i].src, strlen(bad[i].src), "t", &t);
		if (rc >= 0) {
			tmpl_free(t);
			CHECK_FAIL("compiled: %s", bad[i].src);
		}
		CHECK(t == NULL);
		if (bad[i].sub && !strstr(err_msg(), bad[i].sub))
			CHECK_FAIL("error for %s is \"%s\"", bad[i].src, err_msg());
	}
	/* an unknown filter inside an if only fails when it runs (as in jinja2) */
	int rc;
	char *s = render("{% if false %}{{ x|nofilter }}{% endif %}ok", NULL, &rc);
	CHECK_STR(s, "ok");
	free(s);
	expect_error("{% if true %}{{ x|nofilter }}{% endif %}", NULL, "No filter named 'nofilter'");
	/* not UTF-8 */
	struct tmpl *t;
	CHECK(tmpl_compile("a\xff", 2, "t", &t) < 0);
}

/* Templates that compile and fail when rendered, as in jinja2. */
TEST(runtime_errors)
{
	expect_error("{{ raise_exception('custom failure') }}", NULL, "custom failure");
	expect_error("{{ [1].append(2) }}", NULL, "access to attribute 'append' of 'list' object is unsafe");
	expect_error("{% set x = [1] %}{% set _ = x.append(2) %}", NULL, "unsafe");
	expect_error("{{ {'a': 1}.update({}) }}", NULL, "unsafe");
	expect_error("{{ {}.pop('a') }}", NULL, "unsafe");
	expect_error("{{ 'a'.__class__ }}{{ 'a'.__class__() }}", NULL, "unsafe");
	expect_error("{{ u.attr }}", NULL, "'u' is undefined");
	expect_error("{{ x.a.b }}", "{\"x\": {}}", "has no attribute 'a'");
	expect_error("{{ u['k'] }}", NULL, "undefined");
	expect_error("{{ u() }}", NULL, "undefined");
	expect_error("{{ u + 1 }}", NULL, "undefined");
	expect_error("{{ 1 + 'a' }}", NULL, "unsupported operand");
	expect_error("{{ 'a' + 1 }}", NULL, "can only concatenate str");
	expect_error("{{ 1 / 0 }}", NULL, "division by zero");
	expect_error("{{ 1 // 0 }}", NULL, NULL);
	expect_error("{{ 1 % 0 }}", NULL, NULL);
	expect_error("{{ 1 < 'a' }}", NULL, "not supported");
	expect_error("{{ 1 in 'abc' }}", NULL, "requires string");
	expect_error("{{ 'a' in none }}", NULL, "not iterable");
	expect_error("{{ [] in {} }}", NULL, "unhashable");
	expect_error("{{ none|length }}", NULL, "has no len()");
	expect_error("{% for x in 5 %}{% endfor %}", NULL, "not iterable");
	expect_error("{% set a, b = [1] %}", NULL, "not enough values");
	expect_error("{% set a, b = [1, 2, 3] %}", NULL, "too many values");
	expect_error("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, "takes not more than");
	expect_error("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}", NULL, "no keyword argument 'b'");
	expect_error("{% macro m() %}{% endmacro %}{% call m() %}x{% endcall %}", NULL, "caller");
	expect_error("{{ 'x'|tojson(bad=1) }}", NULL, "unexpected keyword argument");
	expect_error("{{ u|tojson }}", NULL, "not JSON serializable");
	expect_error("{{ 'x'.upper(1) }}", NULL, NULL);
	expect_error("{{ [1, 2]|first(1) }}", NULL, NULL);
	expect_error("{% set n = 1 %}{% set n.x = 2 %}", NULL, "non-namespace");
	expect_error("{{ {[1]: 2} }}", NULL, "unhashable");
	expect_error("{{ range(1, 2, 0) }}", NULL, NULL);
	expect_error("{% for x in [1] %}{{ loop(1) }}{% endfor %}", NULL, "recursive");
	expect_error("{{ [1, 2, 3][1:2:0] }}", NULL, "step");
	expect_error("{{ strftime_now() }}", NULL, NULL);
	expect_error("{{ {}|dictsort(by='x') }}", NULL, NULL);
	expect_error("{{ x|items }}", "{\"x\": [1]}", NULL);	/* eager here, lazy in jinja2 */
	expect_error("{{ d[1:] }}", "{\"d\": {\"a\": 1}}", "unhashable type: 'slice'");
	expect_error("{{ u[1:] }}", NULL, "'u' is undefined");
	expect_error("{{ 5|indent }}", NULL, NULL);
	expect_error("{{ [1]|indent }}", NULL, NULL);
	expect_error("{{ [1, 2, 3, 4, 5, 6, 7]|truncate(5, leeway=0) }}", NULL, NULL);
	/* jinja2 (the sandbox's string.Formatter) says the same for both orders */
	expect_error("{{ '{} {0}'.format(1) }}", NULL, "cannot switch from manual field specification to automatic field numbering");
	expect_error("{{ '{0} {}'.format(1, 2) }}", NULL, "cannot switch from manual field specification to automatic field numbering");
	expect_error("{{ '{:,x}'.format(1) }}", NULL, "Cannot specify ',' with 'x'.");
	expect_error("{{ '{:,}'.format('a') }}", NULL, "Cannot specify ',' with 's'.");
	expect_error("{{ 'a b'|urlize }}", NULL, "filter 'urlize' is not supported");
	expect_error("{{ 'a'|wordwrap(0) }}", NULL, "invalid width 0 (must be > 0)");
	expect_error("{{ 5|wordwrap }}", NULL, "'int' object has no attribute 'splitlines'");
	/* the error names the template and the line */
	expect_error("line one\n{% if true %}\n{{ raise_exception('at three') }}{% endif %}", NULL, "t: line 3: at three");
}

/* ---- bounds ---------------------------------------------------------- */

TEST(bound_huge_range)
{
	int rc;
	char *s = render("{% for x in range(10**9) %}{% endfor %}", NULL, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK(strstr(err_msg(), "Range too big") != NULL);
}

TEST(bound_step_budget)
{
	struct tmpl_render_opts o = { .limits = { .max_steps = 200000 } };
	int rc;
	char *s = render_opts("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
			      NULL, &o, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK(strstr(err_msg(), "step budget") != NULL);
	/* exponential macro recursion */
	s = render_opts("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
			NULL, &o, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
}

TEST(bound_recursion)
{
	int rc;
	char *s = render("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", NULL, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK(strstr(err_msg(), "nested too deeply") != NULL);
	s = render("{% for x in items recursive %}{{ loop(items) }}{% endfor %}", "{\"items\": [1]}", &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
}

TEST(bound_giant_strings)
{
	int rc;
	char *s = render("{{ 'x' * 10**12 }}", NULL, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	s = render("{{ [1] * 10**12 }}", NULL, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	s = render("{{ 'x'|center(10**12) }}", NULL, &rc);
	CHECK(s == NULL);
	/* doubling a string until the output cap */
	struct tmpl_render_opts o = { .limits = { .max_output = 1 << 20 } };
	s = render_opts("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
			NULL, &o, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	/* output cap on plain output */
	s = render_opts("{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}", NULL, &o, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK(strstr(err_msg(), "output too large") != NULL);
}

TEST(bound_memory)
{
	struct tmpl_render_opts o = { .limits = { .max_memory = 4 << 20 } };
	int rc;
	/* 100000 distinct strings of 100 bytes are live at the end */
	char *s = render_opts("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + ['x' * 100 ~ i] %}{% endfor %}",
			      NULL, &o, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK(strstr(err_msg(), "memory") != NULL);
}

/* Values built up by repeated concatenation take memory in proportion to
 * their size, not to their history (each version is a copy otherwise). */
TEST(memory_follows_live_data)
{
	struct tmpl_render_opts o = { .limits = { .max_memory = 8 << 20 } };
	int rc;
	/* 3,000 messages of 200 bytes accumulated in a namespace: 600 KB at
	 * the end, 900 MB if every version were kept */
	struct strbuf msgs = STRBUF_INIT, want = STRBUF_INIT;
	sb_adds(&msgs, "{\"messages\": [");
	for (int i = 0; i < 3000; i++) {
		char content[256];
		snprintf(content, sizeof(content), "%05d%0195d", i, 0);
		sb_addf(&msgs, "%s{\"role\": \"%s\", \"content\": \"%s\"}", i ? ", " : "",
			i % 2 ? "assistant" : "user", content);
		sb_addf(&want, "<%s>%s", i % 2 ? "assistant" : "user", content);
	}
	sb_adds(&msgs, "]}");
	char *s = render_opts("{% set ns = namespace(s='') %}{% for m in messages %}"
			      "{% set ns.s = ns.s + '<' + m.role + '>' ~ m.content %}{% endfor %}{{ ns.s }}",
			      msgs.buf, &o, &rc);
	CHECK_MSG(s != NULL, "accumulating 600 KB: %s", err_msg());
	CHECK(!strcmp(s, want.buf));
	free(s);
	sb_release(&msgs);
	sb_release(&want);
	/* a list grown one item at a time */
	s = render_opts("{% set ns = namespace(l=[]) %}{% for i in range(20000) %}{% set ns.l = ns.l + [i] %}"
			"{% endfor %}{{ ns.l|length }} {{ ns.l|sum }} {{ ns.l[12345] }}", NULL, &o, &rc);
	CHECK_MSG(s != NULL, "growing a list: %s", err_msg());
	CHECK_STR(s, "20000 199990000 12345");
	free(s);
	/* empty nested loops run out of steps, not memory */
	s = render_opts("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
			NULL, &o, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK_MSG(strstr(err_msg(), "step budget") != NULL, "%s", err_msg());
	/* ranges of every size, each built many times */
	s = render_opts("{% set ns = namespace(n=0) %}{% for i in range(3000) %}{% for j in range(i) %}{% endfor %}"
			"{% set ns.n = ns.n + range(i)|length %}{% endfor %}{{ ns.n }}",
			NULL, &o, &rc);
	CHECK_MSG(s != NULL, "%s", err_msg());
	CHECK_STR(s, "4498500");
	free(s);
}

/* Growing in place must not change values that share the old bytes
 * (expected outputs from jinja2 3.1.6). */
static const struct rcase in_place_cases[] = {
	{ "{% set ns = namespace(s='a' * 9000) %}{% set ns.s = ns.s + 'b' %}{% set a = ns.s %}{% set ns.s = ns.s + 'c' %}"
	  "{% set b = a + 'd' %}{% set x = ns.s ~ 'p' ~ 1 %}{% set y = ns.s ~ 'q' %}{% set z = ns.s ~ ns.s %}"
	  "{{ a|length }} {{ a[-3:] }} {{ b[-3:] }} {{ ns.s[-3:] }} {{ x[-4:] }} {{ y[-3:] }} {{ z|length }} "
	  "{{ z[8999:9003] }} {{ z[-3:] }}",
	  NULL,
	  "9001 aab abd abc bcp1 bcq 18004 abca abc" },
	{ "{% set ns = namespace(l=[0] * 5000) %}{% set ns.l = ns.l + [1] %}{% set a = ns.l %}{% set ns.l = ns.l + [2, 3] %}"
	  "{% set b = a + [4] %}{% set c = ns.l + ns.l %}{{ a|length }} {{ a[-2:] }} {{ b[-2:] }} {{ ns.l[-3:] }} "
	  "{{ c|length }} {{ c[5001:5005] }} {{ (a + [5])[-2:] }} {{ range(3, 6)|list }} {{ range(2)|list }} "
	  "{{ range(5)|list }} {{ range(10, 0, -3)|list }}",
	  NULL,
	  "5001 [0, 1] [1, 4] [1, 2, 3] 10006 [2, 3, 0, 0] [1, 5] [3, 4, 5] [0, 1] [0, 1, 2, 3, 4] [10, 7, 4, 1]" },
	{ "{% set ns = namespace(s='') %}{% for i in range(3000) %}{% set ns.s = ns.s + ('%05d' % i) %}"
	  "{% if i % 1000 == 999 %}{% set keep = ns.s %}{{ keep|length }}:{{ keep[-5:] }} {% endif %}{% endfor %}"
	  "{{ ns.s[4995:5010] }}",
	  NULL,
	  "5000:00999 10000:01999 15000:02999 009990100001001" },
	{ "{{ range(10**15, 10**15 + 2)|list }} {{ range(199998, 200002)|list }} {{ range(-2, 2)|list }} "
	  "{{ range(3)|list + range(2)|list }}",
	  NULL,
	  "[1000000000000000, 1000000000000001] [199998, 199999, 200000, 200001] [-2, -1, 0, 1] [0, 1, 2, 0, 1]" },
};

TEST(in_place_growth) { RUN(in_place); }

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Work on long data costs steps in proportion: scanning 60 MB many times
 * must not take hours on the default budget. */
TEST(bound_work_on_long_strings)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc;
	char *s = render("{% set big = 'a' * 60000000 %}{% for i in range(100000) %}"
			 "{% if big.count('b') %}x{% endif %}{% endfor %}", NULL, &rc);
	double secs = seconds_since(&t0);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK_MSG(strstr(err_msg(), "step budget") || strstr(err_msg(), "too long"), "%s", err_msg());
	/* wide bound: the default time limit is 10 s */
	CHECK_MSG(secs < 30, "took %.1f s", secs);
	s = render("{% set big = 'a' * 60000000 %}{% for i in range(100000) %}"
		   "{% if 'b' in big or big == big[1:] ~ 'a' %}x{% endif %}{% endfor %}", NULL, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
}

TEST(bound_time)
{
	struct tmpl_render_opts o = { .limits = { .max_steps = 1000000000000ull, .max_time_ms = 100 } };
	int rc;
	char *s = render_opts("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
			      NULL, &o, &rc);
	CHECK(s == NULL);
	CHECK_INT(rc, -E2BIG);
	CHECK_MSG(strstr(err_msg(), "took too long") != NULL, "%s", err_msg());
	CHECK(strstr(err_msg(), "100 ms") != NULL);
}

static char *repeat_str(const char *a, int n, const char *mid, const char *b, int m)
{
	struct strbuf sb = STRBUF_INIT;
	for (int i = 0; i < n; i++)
		sb_adds(&sb, a);
	sb_adds(&sb, mid);
	for (int i = 0; i < m; i++)
		sb_adds(&sb, b);
	return sb_detach(&sb, NULL);
}

TEST(bound_deep_nesting)
{
	static const struct { const char *open, *mid, *close; int n; } deep[] = {
		{ "{% if 1 %}", "x", "{% endif %}", 5000 },
		{ "(", "1", ")", 5000 },
		{ "[", "1", "]", 5000 },
		{ "-", "1", "", 100000 },
		{ "not ", "1", "", 100000 },
		{ "", "x", ".a", 100000 },
		{ "", "x", "|trim", 100000 },
		{ "", "1", "+1", 100000 },
		{ "", "1", " if 1", 100000 },
		{ "", "x", "[0]", 100000 },
		{ "", "f", "()", 100000 },
	};
	for (size_t i = 1; i < sizeof(deep) / sizeof(deep[0]); i++) {
		char *inner = repeat_str(deep[i].open, deep[i].open[0] ? deep[i].n : 0, deep[i].mid,
					 deep[i].close, deep[i].close[0] ? deep[i].n : 0);
		char *src = repeat_str("{{ ", 1, inner, " }}", 1);
		free(inner);
		struct tmpl *t = NULL;
		int rc = tmpl_compile(src, strlen(src), "t", &t);
		free(src);
		tmpl_free(t);
		CHECK_MSG(rc < 0, "nesting case %zu compiled", i);
		CHECK_MSG(strstr(err_msg(), "too deeply") != NULL, "case %zu: %s", i, err_msg());
	}
	char *src = repeat_str(deep[0].open, deep[0].n, deep[0].mid, deep[0].close, deep[0].n);
	struct tmpl *t = NULL;
	int rc = tmpl_compile(src, strlen(src), "t", &t);
	free(src);
	CHECK(rc < 0);
	/* moderately deep is fine */
	src = repeat_str("(", 100, "1", ")", 100);
	char *tsrc = repeat_str("{{ ", 1, src, " }}", 1);
	free(src);
	char *out = render(tsrc, NULL, &rc);
	free(tsrc);
	CHECK_STR(out, "1");
	free(out);
	/* data a template nests deeper than the stack allows fails cleanly */
	static const char *const deep_ops[] = { "{{ ns.x }}", "{{ ns.x == ns.x }}", "{{ ns.x|tojson }}",
						"{{ ns.x in {} }}", "{{ ns.x < ns.x }}", "{{ [ns.x]|sort }}" };
	for (size_t i = 0; i < sizeof(deep_ops) / sizeof(deep_ops[0]); i++) {
		char *tpl = repeat_str("{% set ns = namespace(x=(1,)) %}{% for i in range(100000) %}"
				       "{% set ns.x = (ns.x,) %}{% endfor %}", 1, deep_ops[i], "", 0);
		char *res = render(tpl, NULL, &rc);
		free(tpl);
		CHECK_MSG(res == NULL && rc == -E2BIG, "deep data case %zu: %s", i, res ? res : err_msg());
	}
	/* deeply nested data is refused at the JSON boundary, not by a crash */
	struct tmpl_vars *v = tmpl_vars_new();
	char *json = repeat_str("[", 100000, "1", "]", 100000);
	CHECK(tmpl_vars_set_json(v, "x", json, strlen(json)) < 0);
	free(json);
	json = repeat_str("[", 300, "1", "]", 300);
	CHECK(tmpl_vars_set_json(v, "x", json, strlen(json)) == 0);
	free(json);
	CHECK(tmpl_compile("{{ x|tojson }}{{ x }}", strlen("{{ x|tojson }}{{ x }}"), "t", &t) == 0);
	struct strbuf sb = STRBUF_INIT;
	CHECK(tmpl_render(t, v, NULL, &sb) == 0);
	CHECK(sb.len == 2 * (300 * 2 + 1));
	sb_release(&sb);
	tmpl_free(t);
	tmpl_vars_free(v);
}

/* ---- values in and out ----------------------------------------------------- */

TEST(json_variables)
{
	int rc;
	char *s = render("{{ a }} {{ b }} {{ c }} {{ d }} {{ e }} {{ [a, b, c]|tojson }} {{ f }}",
			 "{\"a\": 1, \"b\": 1.0, \"c\": 1e2, \"d\": 12345678901234567890, \"e\": -0, "
			 "\"f\": \"\\ud83c\\udf0d\"}", &rc);
	CHECK_STR(s, "1 1.0 100.0 12345678901234567890 0 [1, 1.0, 100.0] \xf0\x9f\x8c\x8d");
	free(s);
	struct tmpl_vars *v = tmpl_vars_new();
	CHECK(tmpl_vars_set_json(v, "x", "{\"a\": }", 7) < 0);
	CHECK(tmpl_vars_set_json(v, "x", "\"\xff\"", 3) < 0);
	CHECK(tmpl_vars_set_json(v, "x", "[1, 2,]", 7) < 0);
	CHECK(tmpl_vars_set_json(v, "x", "1 2", 3) < 0);
	const char *dup = "{\"k\": 1, \"k\": 2, \"j\": 3}";
	CHECK(tmpl_vars_set_json(v, "x", dup, strlen(dup)) == 0);
	CHECK(tmpl_vars_merge_json(v, "[1]", 3) < 0);
	CHECK(tmpl_vars_set_str(v, "s", "text") == 0);
	CHECK(tmpl_vars_set_bool(v, "b", true) == 0);
	CHECK(tmpl_vars_set_none(v, "n") == 0);
	CHECK(tmpl_vars_has(v, "s") && !tmpl_vars_has(v, "nope"));
	struct tmpl *t;
	const char *src = "{{ x }} {{ s }} {{ b }} {{ n }}";
	CHECK(tmpl_compile(src, strlen(src), "t", &t) == 0);
	struct strbuf out = STRBUF_INIT;
	CHECK(tmpl_render(t, v, NULL, &out) == 0);
	/* duplicate keys: the last value, in the first key's place (json.loads) */
	CHECK_STR(out.buf, "{'k': 2, 'j': 3} text True None");
	sb_release(&out);
	tmpl_free(t);
	tmpl_vars_free(v);
}

TEST(strftime_now_fixed)
{
	struct tm now;
	CHECK(tmpl_parse_now("2025-03-14T09:26:53", &now) == 0);
	struct tmpl_render_opts o = { .now = &now };
	int rc;
	char *s = render_opts("{{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j [%f][%z][%Z] %a %b %p %y') }}",
			      NULL, &o, &rc);
	CHECK_STR(s, "2025-03-14 09:26:53 Friday March 073 [000000][][] Fri Mar AM 25");
	free(s);
	CHECK(tmpl_parse_now("2024-02-29", &now) == 0);
	CHECK(tmpl_parse_now("2023-02-29", &now) < 0);
	CHECK(tmpl_parse_now("2025-13-01", &now) < 0);
	CHECK(tmpl_parse_now("yesterday", &now) < 0);
	CHECK(tmpl_parse_now("2025-01-01 10:00", &now) == 0);
}

/* ---- the chat-template helper ------------------------------------------ */

static char *chat(const char *config, const char *jinja, const struct tmpl_chat_request *req, int *rc)
{
	struct tmpl_chat *c;
	*rc = tmpl_chat_from_config(config, config ? strlen(config) : 0, jinja, jinja ? strlen(jinja) : 0,
				    NULL, &c);
	if (*rc < 0)
		return NULL;
	struct strbuf out = STRBUF_INIT;
	*rc = tmpl_chat_render(c, req, NULL, &out);
	tmpl_chat_free(c);
	if (*rc < 0) {
		sb_release(&out);
		return NULL;
	}
	return sb_detach(&out, NULL);
}

TEST(chat_config_tokens)
{
	/* bos/eos as AddedToken objects, unk_token null, extra tokens */
	const char *cfg =
		"{\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": \"</s>\", "
		"\"unk_token\": null, \"pad_token\": \"\", \"additional_special_tokens\": [\"<a>\", {\"content\": \"<b>\"}], "
		"\"chat_template\": \"{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}"
		"{% endfor %}{{ additional_special_tokens|join(',') }}{% if add_generation_prompt %}<assistant>{% endif %}"
		"[{{ unk_token }}{{ pad_token }}]\"}";
	struct tmpl_chat_request req = { .messages_json = "[{\"role\": \"user\", \"content\": \"hi\"}]",
					 .add_generation_prompt = true };
	int rc;
	char *s = chat(cfg, NULL, &req, &rc);
	CHECK_STR(s, "<s><user>hi</s><a>,<b><assistant>[]");
	free(s);
	/* kwargs replace tokens and add variables; reserved names are refused */
	req.kwargs_json = "{\"bos_token\": \"[BOS]\", \"unk_token\": \"?\"}";
	s = chat(cfg, NULL, &req, &rc);
	CHECK_STR(s, "[BOS]<user>hi</s><a>,<b><assistant>[?]");
	free(s);
	req.kwargs_json = "{\"messages\": []}";
	s = chat(cfg, NULL, &req, &rc);
	CHECK(s == NULL && rc < 0);
	req.kwargs_json = "[1]";
	s = chat(cfg, NULL, &req, &rc);
	CHECK(s == NULL && rc < 0);
	/* no template at all */
	s = chat("{\"bos_token\": \"<s>\"}", NULL, &req, &rc);
	CHECK(s == NULL && rc == -ENOENT);
	/* a syntax error names the template */
	s = chat("{\"chat_template\": \"{% if %}\"}", NULL, &req, &rc);
	CHECK(s == NULL && strstr(err_msg(), "chat_template: line 1") != NULL);
}

TEST(chat_template_choice)
{
	const char *cfg = "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ tools is none }}\"}, "
			  "{\"name\": \"tool_use\", \"template\": \"T{{ tools|length }}\"}, "
			  "{\"name\": \"rag\", \"template\": \"R{{ documents|length }}\"}]}";
	struct tmpl_chat_request req = { .messages_json = "[]" };
	int rc;
	char *s = chat(cfg, NULL, &req, &rc);
	CHECK_STR(s, "DTrue");
	free(s);
	req.tools_json = "[{\"type\": \"function\"}]";
	s = chat(cfg, NULL, &req, &rc);
	CHECK_STR(s, "T1");
	free(s);
	req.template_name = "default";
	s = chat(cfg, NULL, &req, &rc);
	CHECK_STR(s, "DFalse");
	free(s);
	req.template_name = "rag";
	req.documents_json = "[{\"text\": \"a\"}, {\"text\": \"b\"}]";
	s = chat(cfg, NULL, &req, &rc);
	CHECK_STR(s, "R2");
	free(s);
	req.template_name = "nope";
	s = chat(cfg, NULL, &req, &rc);
	CHECK(s == NULL && rc < 0);
	/* several templates and no default */
	struct tmpl_chat_request plain = { .messages_json = "[]" };
	s = chat("{\"chat_template\": [{\"name\": \"a\", \"template\": \"A\"}, {\"name\": \"b\", \"template\": \"B\"}]}",
		 NULL, &plain, &rc);
	CHECK(s == NULL && rc < 0);
	/* chat_template.jinja is the default template */
	s = chat("{\"chat_template\": \"config\", \"eos_token\": \"E\"}", "jinja {{ eos_token }}", &plain, &rc);
	CHECK_STR(s, "jinja E");
	free(s);
	s = chat(NULL, "only jinja", &plain, &rc);
	CHECK_STR(s, "only jinja");
	free(s);
	/* messages must be a list */
	plain.messages_json = "{\"role\": \"user\"}";
	s = chat(NULL, "x", &plain, &rc);
	CHECK(s == NULL && rc < 0);
}

TEST(chat_continue_final_message)
{
	const char *tpl = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}";
	const char *trim = "{% for m in messages %}{{ m.content|trim }}|{% endfor %}";
	struct tmpl_chat_request req = {
		.messages_json = "[{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"Hello \"}]",
		.continue_final_message = true,
	};
	int rc;
	char *s = chat(NULL, tpl, &req, &rc);
	CHECK_STR(s, "<user>hi</user><assistant>Hello ");
	free(s);
	s = chat(NULL, trim, &req, &rc);
	CHECK_STR(s, "hi|Hello");
	free(s);
	/* content parts: the last text block */
	req.messages_json = "[{\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"Part\"}]}]";
	s = chat(NULL, "<{{ messages[0].content[0].text }}>", &req, &rc);
	CHECK_STR(s, "<Part");
	free(s);
	/* the message must appear in the output */
	req.messages_json = "[{\"role\": \"assistant\", \"content\": \"missing\"}]";
	s = chat(NULL, "nothing", &req, &rc);
	CHECK(s == NULL && rc < 0);
	/* not together with add_generation_prompt */
	req.add_generation_prompt = true;
	s = chat(NULL, tpl, &req, &rc);
	CHECK(s == NULL && rc < 0);
}

TEST(chat_request_object)
{
	struct tmpl_chat *c;
	const char *tpl = "{{ tools|tojson }}|{{ add_generation_prompt }}|{{ enable_thinking }}|{{ messages|length }}";
	CHECK(tmpl_chat_from_config(NULL, 0, tpl, strlen(tpl), "request.jinja", &c) == 0);
	CHECK(tmpl_chat_names(c)[0] && !strcmp(tmpl_chat_names(c)[0], "default"));
	const char *req = "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
			  "\"tools\": [{\"a\": 1.0, \"b\": 2, \"c\": [1e2, 0.5]}], "
			  "\"chat_template_kwargs\": {\"enable_thinking\": false}, \"temperature\": 0.7}";
	struct strbuf out = STRBUF_INIT;
	CHECK(tmpl_chat_render_request(c, req, strlen(req), NULL, &out) == 0);
	CHECK_STR(out.buf, "[{\"a\": 1.0, \"b\": 2, \"c\": [100.0, 0.5]}]|True|False|1");
	sb_reset(&out);
	const char *req2 = "{\"messages\": [], \"add_generation_prompt\": false, \"tools\": null}";
	CHECK(tmpl_chat_render_request(c, req2, strlen(req2), NULL, &out) == 0);
	CHECK_STR(out.buf, "null|False||0");
	CHECK(tmpl_chat_render_request(c, "{}", 2, NULL, &out) < 0);
	CHECK(tmpl_chat_render_request(c, "[", 1, NULL, &out) < 0);
	sb_release(&out);
	tmpl_chat_free(c);
}

/* ---- one compiled template, many threads ------------------------------------ */

static const char *mt_src =
	"{%- set ns = namespace(n=0) -%}"
	"{%- macro show(m) -%}<{{ m.role }}>{{ m.content|trim }}{%- endmacro -%}"
	"{%- for m in messages -%}{%- set ns.n = ns.n + m.content|length -%}{{ show(m) }}"
	"{%- endfor -%}|{{ ns.n }}|{{ messages|map(attribute='role')|unique|list|tojson }}";

struct mt_arg {
	const struct tmpl *t;
	const struct tmpl_vars *v;
	const char *want;
	int failures;
};

static void *mt_worker(void *p)
{
	struct mt_arg *a = p;
	for (int i = 0; i < 300; i++) {
		struct strbuf out = STRBUF_INIT;
		if (tmpl_render(a->t, a->v, NULL, &out) < 0 || strcmp(out.buf, a->want))
			a->failures++;
		sb_release(&out);
	}
	return NULL;
}

TEST(concurrent_renders)
{
	struct tmpl *t;
	CHECK(tmpl_compile(mt_src, strlen(mt_src), "mt", &t) == 0);
	struct tmpl_vars *v = tmpl_vars_new();
	const char *msgs = "[{\"role\": \"user\", \"content\": \" hello \"}, {\"role\": \"assistant\", "
			   "\"content\": \"hi\"}, {\"role\": \"user\", \"content\": \"bye\"}]";
	CHECK(tmpl_vars_set_json(v, "messages", msgs, strlen(msgs)) == 0);
	const char *want = "<user>hello<assistant>hi<user>bye|12|[\"user\", \"assistant\"]";
	pthread_t th[4];
	struct mt_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct mt_arg){ t, v, want, 0 };
		CHECK(pthread_create(&th[i], NULL, mt_worker, &args[i]) == 0);
	}
	int failures = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		failures += args[i].failures;
	}
	tmpl_vars_free(v);
	tmpl_free(t);
	CHECK_INT(failures, 0);
}

/* ---- the fuzz target's seeds ---------------------------------------------- */

/* The fuzz target's own checks, failing this test instead of aborting. */
#define FUZZ_TMPL_BROKEN(what) CHECK_FAIL("fuzz_tmpl: invariant broken: %s", what)
#include "test/fuzz/fuzz_tmpl.c"

#include <dirent.h>

#define FUZZ_SEEDS "test/fuzz/fuzz_tmpl.seed"

TEST(fuzz_seeds_replay)
{
	DIR *d = opendir(FUZZ_SEEDS);
	CHECK_MSG(d != NULL, "%s: cannot open (run from the repository root)", FUZZ_SEEDS);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", FUZZ_SEEDS, e->d_name);
		struct strbuf sb = STRBUF_INIT;
		CHECK_MSG(sb_read_file(&sb, path, 1 << 20) == 0, "%.200s: %.200s", e->d_name, err_msg());
		LLVMFuzzerTestOneInput((const uint8_t *)sb.buf, sb.len);
		sb_release(&sb);
		n++;
	}
	closedir(d);
	CHECK_MSG(n >= 10, "only %d seeds in %s", n, FUZZ_SEEDS);
}

int main(void)
{
	return RUN_TESTS();
}
