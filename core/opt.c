/*
 * opt.c - table-driven option parsing (see opt.h).
 */
#include "core/opt.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OPT_MAX 128

void opt_env_name(const char *name, char *buf, size_t size)
{
	size_t i = 0;
	const char *prefix = "DYN_";

	for (; *prefix && i + 1 < size; prefix++)
		buf[i++] = *prefix;
	for (; *name && i + 1 < size; name++)
		buf[i++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
	buf[i] = '\0';
}

int opt_parse_bool(const char *s)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcasecmp(s, yes[i]))
			return 1;
		if (!strcasecmp(s, no[i]))
			return 0;
	}
	return -1;
}

static const struct opt *find_opt(const struct opt *opts, const char *name,
				  size_t len)
{
	for (; opts->name; opts++)
		if (strlen(opts->name) == len && !strncmp(opts->name, name, len))
			return opts;
	return NULL;
}

/* Store text as the value of o; "source" names where it came from. */
static int set_value(const struct opt *o, const char *text, const char *source)
{
	switch (o->type) {
	case OPT_BOOL: {
		int b = opt_parse_bool(text);
		if (b < 0)
			return err_set(-EINVAL, "%s: '%s' is not a boolean (use true or false)",
				       source, text);
		*(int *)o->value = b;
		return 0;
	}
	case OPT_INT: {
		long v;
		int rc = parse_long(text, &v, source);
		if (rc < 0)
			return rc;
		if (o->min < o->max && (v < o->min || v > o->max))
			return err_set(-ERANGE, "%s: %ld is out of range [%.0f, %.0f]",
				       source, v, o->min, o->max);
		*(long *)o->value = v;
		return 0;
	}
	case OPT_DOUBLE: {
		double v;
		int rc = parse_double(text, &v, source);
		if (rc < 0)
			return rc;
		if (o->min < o->max && (v < o->min || v > o->max))
			return err_set(-ERANGE, "%s: %g is out of range [%g, %g]",
				       source, v, o->min, o->max);
		*(double *)o->value = v;
		return 0;
	}
	case OPT_ENUM:
		for (const char *const *c = o->choices; *c; c++) {
			if (!strcmp(*c, text)) {
				*(const char **)o->value = *c;
				return 0;
			}
		}
		{
			struct strbuf sb = STRBUF_INIT;
			const char *near = str_closest(text, o->choices);
			for (const char *const *c = o->choices; *c; c++)
				sb_addf(&sb, "%s%s", c == o->choices ? "" : ", ", *c);
			err_set(-EINVAL, "%s: '%s' is not one of %s%s%s%s", source,
				text, sb.buf, near ? " (did you mean '" : "",
				near ? near : "", near ? "'?)" : "");
			sb_release(&sb);
			return -EINVAL;
		}
	case OPT_STRING:
		*(const char **)o->value = text;
		return 0;
	}
	return err_set(-EINVAL, "%s: bad option type", source);
}

static int unknown_option(const struct opt_cmd *cmd, const char *arg, size_t len)
{
	const char *names[OPT_MAX + 2];
	char *word = xstrndup(arg, len);
	size_t n = 0;

	for (const struct opt *o = cmd->opts; o && o->name && n < OPT_MAX; o++)
		names[n++] = o->name;
	names[n++] = "help";
	names[n] = NULL;
	const char *near = str_closest(word, names);
	if (near)
		err_set(-EINVAL, "unknown option '--%s' (did you mean '--%s'?)",
			word, near);
	else
		err_set(-EINVAL, "unknown option '--%s' (see 'dyn %s --help')",
			word, cmd->name);
	free(word);
	return -EINVAL;
}

int opt_parse(const struct opt_cmd *cmd, int argc, char **argv, int *nargs)
{
	static const struct opt none[] = { { 0 } };
	const struct opt *opts = cmd->opts ? cmd->opts : none;
	unsigned char seen[OPT_MAX] = { 0 };
	int npos = 0, help = 0, only_args = 0;
	char src[160];

	for (int i = 1; i < argc; i++) {
		char *arg = argv[i];
		if (only_args || arg[0] != '-' || arg[1] != '-' ) {
			if (!only_args && arg[0] == '-' && arg[1] && arg[1] != '-') {
				if (!strcmp(arg, "-h")) {
					help = 1;
					continue;
				}
				return err_set(-EINVAL,
					       "unknown option '%s' (options are spelled --name)",
					       arg);
			}
			argv[npos++] = arg;
			continue;
		}
		if (!arg[2]) {
			only_args = 1;
			continue;
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);

		if (len == 4 && !strncmp(name, "help", 4)) {
			help = 1;
			continue;
		}
		const struct opt *o = find_opt(opts, name, len);
		int negated = 0;
		if (!o && len > 3 && !strncmp(name, "no-", 3)) {
			o = find_opt(opts, name + 3, len - 3);
			if (o && o->type != OPT_BOOL)
				return err_set(-EINVAL, "option '--%.*s' is not a flag and cannot be negated",
					       (int)(len - 3), name + 3);
			negated = o != NULL;
		}
		if (!o)
			return unknown_option(cmd, name, len);
		snprintf(src, sizeof(src), "--%s", o->name);
		seen[o - opts] = 1;
		if (o->type == OPT_BOOL) {
			if (negated) {
				if (eq)
					return err_set(-EINVAL, "--no-%s takes no value", o->name);
				*(int *)o->value = 0;
				continue;
			}
			int rc = set_value(o, eq ? eq + 1 : "true", src);
			if (rc < 0)
				return rc;
			continue;
		}
		const char *val;
		if (eq) {
			val = eq + 1;
		} else {
			if (i + 1 >= argc)
				return err_set(-EINVAL, "option '--%s' needs a value (%s)",
					       o->name, o->argname ? o->argname : "VALUE");
			val = argv[++i];
		}
		int rc = set_value(o, val, src);
		if (rc < 0)
			return rc;
	}

	/* Environment fallback for everything not given on the command line. */
	for (const struct opt *o = opts; o->name; o++) {
		char env[160];
		if (o - opts >= OPT_MAX)
			return err_set(-EINVAL, "too many options in table");
		const char *v;
		if (seen[o - opts])
			continue;
		opt_env_name(o->name, env, sizeof(env));
		v = getenv(env);
		if (!v)
			continue;
		int rc = set_value(o, v, env);
		if (rc < 0)
			return rc;
	}
	if (nargs)
		*nargs = npos;
	argv[npos] = NULL;
	return help ? OPT_HELP : 0;
}

static void format_default(const struct opt *o, struct strbuf *sb)
{
	switch (o->type) {
	case OPT_BOOL:
		if (*(int *)o->value)
			sb_adds(sb, "on");
		break;
	case OPT_INT:
		sb_addf(sb, "%ld", *(long *)o->value);
		break;
	case OPT_DOUBLE:
		sb_addf(sb, "%g", *(double *)o->value);
		break;
	case OPT_STRING:
	case OPT_ENUM:
		if (*(const char **)o->value && **(const char **)o->value)
			sb_adds(sb, *(const char **)o->value);
		break;
	}
}

void opt_usage(const struct opt_cmd *cmd, FILE *out)
{
	fprintf(out, "usage: dyn %s %s\n\n%s\n", cmd->name,
		cmd->usage ? cmd->usage : "[OPTIONS]", cmd->summary);
	if (cmd->details)
		fprintf(out, "\n%s\n", cmd->details);
	fprintf(out, "\nOptions (each also read from DYN_NAME, e.g. --foo-bar from DYN_FOO_BAR):\n");
	for (const struct opt *o = cmd->opts; o && o->name; o++) {
		struct strbuf left = STRBUF_INIT, def = STRBUF_INIT;
		if (o->type == OPT_BOOL)
			sb_addf(&left, "--[no-]%s", o->name);
		else
			sb_addf(&left, "--%s %s", o->name,
				o->argname ? o->argname : "VALUE");
		if (left.len > 28)
			fprintf(out, "  %s\n  %-28s %s", left.buf, "",
				o->help ? o->help : "");
		else
			fprintf(out, "  %-28s %s", left.buf, o->help ? o->help : "");
		if (o->type == OPT_ENUM) {
			fprintf(out, " (");
			for (const char *const *c = o->choices; *c; c++)
				fprintf(out, "%s%s", c == o->choices ? "" : "|", *c);
			fprintf(out, ")");
		}
		if (o->type == OPT_INT && o->min < o->max)
			fprintf(out, " [%.0f..%.0f]", o->min, o->max);
		else if (o->type == OPT_DOUBLE && o->min < o->max)
			fprintf(out, " [%g..%g]", o->min, o->max);
		format_default(o, &def);
		if (def.len)
			fprintf(out, " [default: %s]", def.buf);
		fputc('\n', out);
		sb_release(&left);
		sb_release(&def);
	}
	fprintf(out, "  %-28s %s\n", "--help", "show this help and exit");
}
