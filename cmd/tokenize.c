/*
 * tokenize.c - "dyn tokenize" and "dyn detokenize": a model's tokenizer
 * from the command line (core/tok), for operators and for the
 * conformance tests, which feed many strings through one process with
 * --jsonl.
 */
#include "cmd/cmd.h"
#include "core/proto/block_hash.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/json.h"
#include "core/tok/tok.h"
#include "core/tok/utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared helpers --------------------------------------------------------- */

/* A JSON string literal for s; bytes that are not UTF-8 become \udcXX
 * (Python's surrogateescape), so a reader can tell them apart. */
static void add_json_bytes(struct strbuf *sb, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	sb_addch(sb, '"');
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80) {
			size_t l = tok_utf8_seq_len((const unsigned char *)s + i, n - i);
			if (l) {
				sb_add(sb, s + i, l);
				i += l;
			} else {
				sb_addf(sb, "\\udc%02x", c);
				i++;
			}
			continue;
		}
		i++;
		switch (c) {
		case '"': sb_adds(sb, "\\\""); break;
		case '\\': sb_adds(sb, "\\\\"); break;
		case '\n': sb_adds(sb, "\\n"); break;
		case '\r': sb_adds(sb, "\\r"); break;
		case '\t': sb_adds(sb, "\\t"); break;
		default:
			if (c < 0x20 || c == 0x7F) {
				sb_adds(sb, "\\u00");
				sb_addch(sb, hex[c >> 4]);
				sb_addch(sb, hex[c & 15]);
			} else {
				sb_addch(sb, c);
			}
		}
	}
	sb_addch(sb, '"');
}

static int read_stdin(struct strbuf *sb)
{
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		sb_add(sb, buf, n);
	return ferror(stdin) ? -1 : 0;
}

/* Read one line (without its newline); 0 at end of input. */
static int read_line(struct strbuf *sb)
{
	static char *line;
	static size_t cap;
	ssize_t n = getline(&line, &cap, stdin);

	sb_reset(sb);
	if (n < 0) {
		free(line);
		line = NULL;
		cap = 0;
		return 0;
	}
	if (n > 0 && line[n - 1] == '\n')
		n--;
	sb_add(sb, line, (size_t)n);
	return 1;
}

static const char *revision;	/* --revision, of both commands */

/* The tokenizer of a model named by a path or a hub id. */
static int load(const char *name, const char *model, struct tok **tok)
{
	char *path;
	int status = cmd_model_files(name, model, revision, &path);
	if (status)
		return status;
	int rc = tok_load(path, tok);
	free(path);
	if (rc < 0) {
		cmd_fail(name, "%s", err_msg());
		return 1;
	}
	return 0;
}

/* ---- dyn tokenize ------------------------------------------------------------- */

static const char *tk_text, *tk_ids;
static int tk_special = 1, tk_pieces, tk_jsonl, tk_block_hashes;
static long tk_block_size = 16;

static const struct opt tokenize_opts[] = {
	{ "text", OPT_STRING, &tk_text, "TEXT", "the text to tokenize (default: all of stdin)", 0, 0, NULL },
	{ "special-tokens", OPT_BOOL, &tk_special, NULL,
	  "add the special tokens the tokenizer's post-processor adds (BOS/EOS)", 0, 0, NULL },
	{ "pieces", OPT_BOOL, &tk_pieces, NULL, "print each id with its token text", 0, 0, NULL },
	{ "jsonl", OPT_BOOL, &tk_jsonl, NULL,
	  "batch mode: each stdin line is a JSON string; print one JSON array of ids per line",
	  0, 0, NULL },
	{ "ids", OPT_STRING, &tk_ids, "IDS",
	  "take these token ids (separated by commas or spaces) instead of text; "
	  "MODEL is then optional", 0, 0, NULL },
	{ "block-hashes", OPT_BOOL, &tk_block_hashes, NULL,
	  "print the KV block hashes of the ids: per full block its index, local hash and "
	  "sequence hash in hex", 0, 0, NULL },
	{ "block-size", OPT_INT, &tk_block_size, "N",
	  "tokens per KV block for --block-hashes (the worker's --block-size)", 1, 1024, NULL },
	CMD_REVISION_OPT(revision),
	{ 0 },
};

static const struct opt_cmd tokenize_cmd = {
	.name = "tokenize",
	.usage = "MODEL [--text TEXT | --ids IDS] [--no-special-tokens] [--pieces] [--jsonl]\n"
		 "       [--block-hashes [--block-size N]]",
	.summary = "Encode text with a model's tokenizer (its tokenizer.json, exactly as\n"
		   "Hugging Face tokenizers does) and print the token ids.",
	.details = "MODEL is a model folder holding tokenizer.json (and optionally\n"
		   "tokenizer_config.json), the path of a tokenizer.json file, a .gguf file\n"
		   "(the tokenizer.json beside it, else its tokenizer metadata), or a Hugging\n"
		   "Face hub id ORG/NAME (its tokenizer files are fetched into the hub cache\n"
		   "as by 'dyn model pull', weights excepted).\n\n"
		   "The text is --text or all of stdin, byte for byte (a trailing newline\n"
		   "included).  Invalid UTF-8 is replaced with U+FFFD per maximal invalid\n"
		   "subpart, as Python's bytes.decode('utf-8', 'replace') does.  With\n"
		   "--jsonl, \\udc80 to \\udcff escapes in the input stand for raw bytes\n"
		   "0x80-0xff (Python's surrogateescape).\n\n"
		   "With --block-hashes, prints instead one line per full block of the ids:\n"
		   "its index, its local hash and its sequence hash (16 hex digits each,\n"
		   "tab-separated), the hashes the KV cache and the KV router use\n"
		   "(XXH3-64, seed 1337; see dyn-tokenize(1)).  Tokens after the last full\n"
		   "block are not hashed.  With --ids the ids are given directly and no\n"
		   "tokenizer is loaded.",
	.opts = tokenize_opts,
};

static int parse_ids(const char *s, struct tok_ids *ids, int any_u32);

/* --block-hashes: "INDEX\tLOCAL\tSEQ" per full block. */
static void print_block_hashes(const struct tok_ids *ids)
{
	size_t nb = ids->n / (size_t)tk_block_size;
	uint64_t *local = calloc(nb ? nb : 1, sizeof(*local));
	uint64_t *seq = calloc(nb ? nb : 1, sizeof(*seq));
	struct strbuf out = STRBUF_INIT;

	if (!local || !seq) {
		fprintf(stderr, "dyn tokenize: out of memory\n");
		exit(1);
	}
	nb = block_hash_sequence(ids->v, ids->n, (int)tk_block_size, local, seq);
	for (size_t i = 0; i < nb; i++)
		sb_addf(&out, "%zu\t%016llx\t%016llx\n", i, (unsigned long long)local[i],
			(unsigned long long)seq[i]);
	fwrite(out.buf, 1, out.len, stdout);
	sb_release(&out);
	free(local);
	free(seq);
}

static void print_piece(struct strbuf *out, const struct tok *tok, int32_t id)
{
	size_t len;
	const char *s = tok_id_to_token(tok, id, &len);
	add_json_bytes(out, s ? s : "", s ? len : 0);
}

static int tokenize_jsonl(const struct tok *tok)
{
	struct strbuf line = STRBUF_INIT, out = STRBUF_INIT;
	struct tok_ids ids = TOK_IDS_INIT;
	int rc = 0;
	long lineno = 0;

	while (read_line(&line)) {
		struct tj_doc doc;
		lineno++;
		if (tok_tj_parse(&doc, line.buf, line.len, TJ_SURROGATEESCAPE, "stdin") < 0) {
			rc = cmd_usage_error("tokenize", "line %ld: %s", lineno, err_msg());
			break;
		}
		if (doc.root.type != TJ_STR) {
			tok_tj_free(&doc);
			rc = cmd_usage_error("tokenize", "line %ld: expected a JSON string", lineno);
			break;
		}
		ids.n = 0;
		if (tok_encode(tok, doc.root.u.s, doc.root.len, tk_special, &ids) < 0) {
			rc = cmd_fail("tokenize", "line %ld: %s", lineno, err_msg());
			tok_tj_free(&doc);
			break;
		}
		tok_tj_free(&doc);
		sb_reset(&out);
		sb_adds(&out, tk_pieces ? "{\"ids\":[" : "[");
		for (size_t i = 0; i < ids.n; i++)
			sb_addf(&out, "%s%d", i ? "," : "", ids.v[i]);
		if (tk_pieces) {
			sb_adds(&out, "],\"pieces\":[");
			for (size_t i = 0; i < ids.n; i++) {
				if (i)
					sb_addch(&out, ',');
				print_piece(&out, tok, ids.v[i]);
			}
			sb_addch(&out, ']');
			sb_addch(&out, '}');
		} else {
			sb_addch(&out, ']');
		}
		sb_addch(&out, '\n');
		fwrite(out.buf, 1, out.len, stdout);
	}
	fflush(stdout);
	tok_ids_release(&ids);
	sb_release(&line);
	sb_release(&out);
	return rc;
}

int cmd_tokenize(int argc, char **argv)
{
	int nargs, rc;
	struct tok *tok = NULL;

	rc = cmd_options(&tokenize_cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs < 1 && !tk_ids)
		return cmd_usage_error("tokenize", "expected one MODEL (see 'dyn tokenize --help')");
	if (tk_jsonl && tk_text)
		return cmd_usage_error("tokenize", "--jsonl reads stdin; it cannot be used with --text");
	if (tk_ids && (tk_text || tk_jsonl || tk_pieces))
		return cmd_usage_error("tokenize", "--ids cannot be used with --text, --jsonl or --pieces");
	if (tk_block_hashes && (tk_jsonl || tk_pieces))
		return cmd_usage_error("tokenize", "--block-hashes cannot be used with --jsonl or --pieces");
	if (tk_ids) {
		struct tok_ids ids = TOK_IDS_INIT;
		if (nargs > 1)
			return cmd_usage_error("tokenize", "expected at most one MODEL with --ids");
		if (parse_ids(tk_ids, &ids, 0) < 0) {
			tok_ids_release(&ids);
			return cmd_usage_error("tokenize", "--ids: %s", err_msg());
		}
		if (tk_block_hashes) {
			print_block_hashes(&ids);
		} else {
			for (size_t i = 0; i < ids.n; i++)
				printf("%s%d", i ? " " : "", ids.v[i]);
			printf("\n");
		}
		tok_ids_release(&ids);
		return 0;
	}
	if (nargs != 1)
		return cmd_usage_error("tokenize", "expected one MODEL (see 'dyn tokenize --help')");
	if ((rc = load("tokenize", argv[0], &tok)))
		return rc;
	if (tk_jsonl) {
		rc = tokenize_jsonl(tok);
		tok_free(tok);
		return rc;
	}

	struct strbuf text = STRBUF_INIT, out = STRBUF_INIT;
	struct tok_ids ids = TOK_IDS_INIT;
	if (tk_text)
		sb_adds(&text, tk_text);
	else if (read_stdin(&text) < 0)
		rc = cmd_fail("tokenize", "reading stdin: %s", strerror(errno));
	if (!rc && tok_encode(tok, text.buf, text.len, tk_special, &ids) < 0)
		rc = cmd_fail("tokenize", "%s", err_msg());
	if (!rc && tk_block_hashes) {
		print_block_hashes(&ids);
	} else if (!rc) {
		for (size_t i = 0; i < ids.n; i++) {
			if (tk_pieces) {
				sb_addf(&out, "%d\t", ids.v[i]);
				print_piece(&out, tok, ids.v[i]);
				sb_addch(&out, '\n');
			} else {
				sb_addf(&out, "%s%d", i ? " " : "", ids.v[i]);
			}
		}
		if (!tk_pieces)
			sb_addch(&out, '\n');
		fwrite(out.buf, 1, out.len, stdout);
	}
	tok_ids_release(&ids);
	sb_release(&text);
	sb_release(&out);
	tok_free(tok);
	return rc;
}

/* ---- dyn detokenize ----------------------------------------------------------- */

static int dt_skip, dt_jsonl, dt_stream;

static const struct opt detokenize_opts[] = {
	{ "skip-special-tokens", OPT_BOOL, &dt_skip, NULL,
	  "leave special tokens (BOS, EOS, chat markers) out of the text", 0, 0, NULL },
	{ "stream", OPT_BOOL, &dt_stream, NULL,
	  "decode incrementally, one id at a time, as a streaming server does", 0, 0, NULL },
	{ "jsonl", OPT_BOOL, &dt_jsonl, NULL,
	  "batch mode: each stdin line is a JSON array of ids; print one JSON string per line "
	  "(with --stream: a JSON array of the text deltas)", 0, 0, NULL },
	CMD_REVISION_OPT(revision),
	{ 0 },
};

static const struct opt_cmd detokenize_cmd = {
	.name = "detokenize",
	.usage = "MODEL [IDS...] [--skip-special-tokens] [--stream] [--jsonl]",
	.summary = "Decode token ids to text with a model's tokenizer, exactly as Hugging\n"
		   "Face tokenizers does, and print the text followed by a newline.",
	.details = "MODEL is named as for dyn tokenize: a folder, a tokenizer.json or a\n"
		   "hub id.  IDS are decimal token ids, as separate arguments or separated by commas\n"
		   "or spaces; without IDS they are read from stdin (so the output of\n"
		   "'dyn tokenize' can be piped in; with --stream, line by line as they\n"
		   "arrive).  Ids are 0 to 4294967295 as in Hugging Face; unknown ones are\n"
		   "skipped.",
	.opts = detokenize_opts,
};

/*
 * Parse ids separated by spaces, commas or brackets.  For tokenize --ids
 * (any_u32 0) they are 32-bit signed values, hashed as given.  For
 * detokenize (any_u32 1) they are what HF's decode takes, 0 to 2^32-1;
 * those above INT32_MAX can name no token and become -1, which decoding
 * skips like any unknown id.
 */
static int parse_ids(const char *s, struct tok_ids *ids, int any_u32)
{
	while (*s) {
		if (strchr(" \t\r\n,[]", *s)) {
			s++;
			continue;
		}
		char *end;
		errno = 0;
		long long v = strtoll(s, &end, 10);
		int bad = end == s || errno || (*end && !strchr(" \t\r\n,[]", *end));
		if (any_u32)
			bad = bad || v < 0 || v > (long long)UINT32_MAX;
		else
			bad = bad || v < INT32_MIN || v > INT32_MAX;
		if (bad)
			return err_set(-EINVAL, "'%.20s' is not a token id", s);
		tok_ids_push(ids, v > INT32_MAX ? -1 : (int32_t)v);
		s = end;
	}
	return 0;
}

static int decode_ids(const struct tok *tok, const struct tok_ids *ids, struct strbuf *out,
		      int json)
{
	struct strbuf text = STRBUF_INIT;
	int rc = 0;

	if (!dt_stream) {
		rc = tok_decode(tok, ids->v, ids->n, dt_skip, &text);
		if (rc == 0) {
			if (json)
				add_json_bytes(out, text.buf, text.len);
			else
				sb_add(out, text.buf, text.len);
		}
		sb_release(&text);
		return rc;
	}
	struct tok_stream *st = tok_stream_new(tok, dt_skip);
	if (json)
		sb_addch(out, '[');
	for (size_t i = 0; i <= ids->n && rc == 0; i++) {
		sb_reset(&text);
		rc = i < ids->n ? tok_stream_put(st, ids->v[i], &text) :
			tok_stream_flush(st, &text);
		if (rc < 0 || !text.len)
			continue;
		if (json) {
			if (out->len > 1 && out->buf[out->len - 1] != '[')
				sb_addch(out, ',');
			add_json_bytes(out, text.buf, text.len);
		} else {
			fwrite(text.buf, 1, text.len, stdout);
			fflush(stdout);
		}
	}
	if (json)
		sb_addch(out, ']');
	tok_stream_free(st);
	sb_release(&text);
	return rc;
}

/* --stream with ids on stdin: decode each line's ids as soon as the line
 * arrives and print every delta at once, so a pipe from a generator shows
 * the text as it is produced. */
static int detokenize_stream_stdin(const struct tok *tok)
{
	struct strbuf line = STRBUF_INIT, text = STRBUF_INIT;
	struct tok_ids ids = TOK_IDS_INIT;
	struct tok_stream *st = tok_stream_new(tok, dt_skip);
	long lineno = 0;
	int rc = 0;

	while (rc == 0 && read_line(&line)) {
		lineno++;
		ids.n = 0;
		if (parse_ids(line.buf, &ids, 1) < 0) {
			rc = cmd_usage_error("detokenize", "stdin line %ld: %s", lineno, err_msg());
			break;
		}
		for (size_t i = 0; i < ids.n && rc == 0; i++) {
			sb_reset(&text);
			if (tok_stream_put(st, ids.v[i], &text) < 0)
				rc = cmd_fail("detokenize", "%s", err_msg());
			else
				fwrite(text.buf, 1, text.len, stdout);
		}
		fflush(stdout);
	}
	if (rc == 0 && ferror(stdin))
		rc = cmd_fail("detokenize", "reading stdin: %s", strerror(errno));
	if (rc == 0) {
		sb_reset(&text);
		if (tok_stream_flush(st, &text) < 0)
			rc = cmd_fail("detokenize", "%s", err_msg());
		sb_addch(&text, '\n');
		fwrite(text.buf, 1, text.len, stdout);
		fflush(stdout);
	}
	tok_stream_free(st);
	tok_ids_release(&ids);
	sb_release(&line);
	sb_release(&text);
	return rc;
}

/*
 * One --jsonl line: a JSON array of ids from 0 to 2^32-1 (ids past
 * INT32_MAX become -1, unknown, as on the command line).  The line is
 * parsed in place.
 */
static int parse_json_ids(struct strbuf *line, struct tok_ids *ids)
{
	struct tj_doc doc;
	int rc = 0;

	if (tok_tj_parse(&doc, line->buf, line->len, 0, "stdin") < 0)
		return -EINVAL;
	if (doc.root.type != TJ_ARR) {
		rc = err_set(-EINVAL, "expected a JSON array of token ids, found %s",
			     tok_tj_type_name(&doc.root));
		goto out;
	}
	for (uint32_t i = 0; i < doc.root.len; i++) {
		const struct tj *v = &doc.root.u.kid[i];
		if (!tok_tj_is_int(v, 0, (double)UINT32_MAX)) {
			rc = err_set(-EINVAL, "element %u is not a token id (an integer from 0 to %u)",
				     i, UINT32_MAX);
			goto out;
		}
		tok_ids_push(ids, v->u.num > INT32_MAX ? -1 : (int32_t)v->u.num);
	}
out:
	tok_tj_free(&doc);
	return rc;
}

static int detokenize_jsonl(const struct tok *tok)
{
	struct strbuf line = STRBUF_INIT, out = STRBUF_INIT;
	struct tok_ids ids = TOK_IDS_INIT;
	long lineno = 0;
	int rc = 0;

	while (read_line(&line)) {
		lineno++;
		ids.n = 0;
		if (parse_json_ids(&line, &ids) < 0) {
			rc = cmd_usage_error("detokenize", "line %ld: %s", lineno, err_msg());
			break;
		}
		sb_reset(&out);
		if (decode_ids(tok, &ids, &out, 1) < 0) {
			rc = cmd_fail("detokenize", "line %ld: %s", lineno, err_msg());
			break;
		}
		sb_addch(&out, '\n');
		fwrite(out.buf, 1, out.len, stdout);
	}
	fflush(stdout);
	tok_ids_release(&ids);
	sb_release(&line);
	sb_release(&out);
	return rc;
}

int cmd_detokenize(int argc, char **argv)
{
	int nargs, rc;
	struct tok *tok = NULL;
	struct tok_ids ids = TOK_IDS_INIT;
	struct strbuf in = STRBUF_INIT, out = STRBUF_INIT;

	rc = cmd_options(&detokenize_cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs < 1)
		return cmd_usage_error("detokenize", "expected MODEL [IDS...] (see 'dyn detokenize --help')");
	if (dt_jsonl && nargs > 1)
		return cmd_usage_error("detokenize", "--jsonl reads stdin; give no IDS");
	for (int i = 1; i < nargs; i++) {
		if (parse_ids(argv[i], &ids, 1) < 0) {
			tok_ids_release(&ids);
			return cmd_usage_error("detokenize", "%s", err_msg());
		}
	}
	if ((rc = load("detokenize", argv[0], &tok))) {
		tok_ids_release(&ids);
		return rc;
	}
	if (dt_jsonl) {
		rc = detokenize_jsonl(tok);
		goto out;
	}
	if (nargs == 1 && dt_stream) {
		rc = detokenize_stream_stdin(tok);
		goto out;
	}
	if (nargs == 1) {
		if (read_stdin(&in) < 0) {
			rc = cmd_fail("detokenize", "reading stdin: %s", strerror(errno));
			goto out;
		}
		if (parse_ids(in.buf, &ids, 1) < 0) {
			rc = cmd_usage_error("detokenize", "stdin: %s", err_msg());
			goto out;
		}
	}
	if (decode_ids(tok, &ids, &out, 0) < 0) {
		rc = cmd_fail("detokenize", "%s", err_msg());
		goto out;
	}
	sb_addch(&out, '\n');
	fwrite(out.buf, 1, out.len, stdout);
out:
	tok_ids_release(&ids);
	sb_release(&in);
	sb_release(&out);
	tok_free(tok);
	return rc;
}
