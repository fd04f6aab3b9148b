/*
 * run_embed.c - dyn run MODEL --embed: sentence embeddings in the terminal.
 *
 * Each line of stdin is one input; each gets one line on stdout, a JSON
 * array of the embedding's floats (or null, with the reason on stderr,
 * for an empty or too-long line).  Lines are embedded --max-num-seqs at a
 * time when stdin is not a terminal; one by one, as typed, when it is.
 */
#include "cmd/cmd.h"
#include "cmd/run_embed.h"
#include "core/embed/embed.h"
#include "core/err.h"
#include "core/platform.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct batch {
	struct tok_ids *ids;	/* [cap]; n == 0: a refused line */
	int n, cap;
	float *out;		/* [cap, dim] */
};

/* Embed and print the batch; returns the number of lines that failed. */
static int flush(struct embedder *e, struct batch *b)
{
	int dim = embedder_dim(e), bad = 0, k = 0;
	const int32_t **ids = xcalloc((size_t)b->n + 1, sizeof(*ids));
	size_t *lens = xcalloc((size_t)b->n + 1, sizeof(*lens));

	for (int i = 0; i < b->n; i++)
		if (b->ids[i].n) {
			ids[k] = b->ids[i].v;
			lens[k++] = b->ids[i].n;
		}
	if (k && embedder_run(e, ids, lens, k, b->out) < 0) {
		fprintf(stderr, "dyn run: %s\n", err_msg());
		bad = b->n;
		k = -1;
	}
	for (int i = 0, j = 0; i < b->n; i++) {
		if (!b->ids[i].n || k < 0) {
			fputs("null\n", stdout);
			continue;
		}
		const float *v = b->out + (size_t)j++ * dim;
		putchar('[');
		for (int d = 0; d < dim; d++)
			printf(d ? ", %.8g" : "%.8g", v[d]);
		fputs("]\n", stdout);
	}
	fflush(stdout);
	for (int i = 0; i < b->n; i++)
		b->ids[i].n = 0;
	b->n = 0;
	free(ids);
	free(lens);
	return bad;
}

int cmd_run_embed(const char *model, long threads, long batch_size, int verbose)
{
	struct embedder *e;
	int tty = isatty(STDIN_FILENO), bad = 0;
	long lineno = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	uint64_t t_start = mono_ns();
	if (embedder_open(model, threads > 0 ? (int)threads : platform_cores(), &e) < 0)
		return cmd_fail("run", "%s", err_msg());
	uint64_t t0 = mono_ns(), t_embed;
	long inputs = 0, tokens = 0;
	if (verbose)
		fprintf(stderr, "loaded %s in %.2f s (%d dims, at most %d tokens an input)\n",
			model, (double)(t0 - t_start) / 1e9, embedder_dim(e),
			embedder_max_tokens(e));
	struct batch b = { xcalloc((size_t)batch_size, sizeof(struct tok_ids)), 0, (int)batch_size,
			   xmalloc((size_t)batch_size * embedder_dim(e) * sizeof(float)) };
	while ((len = getline(&line, &cap, stdin)) >= 0) {
		lineno++;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		struct tok_ids *ids = &b.ids[b.n++];
		if (embedder_tokenize(e, line, (size_t)len, ids) < 0) {
			fprintf(stderr, "dyn run: line %ld: %s\n", lineno, err_msg());
			ids->n = 0;
			bad++;
		}
		inputs++;
		tokens += (long)ids->n;
		if (tty || b.n == b.cap)
			bad += flush(e, &b);
	}
	bad += flush(e, &b);
	t_embed = mono_ns() - t0;	/* tokenizing, encoding and printing */
	if (verbose)
		fprintf(stderr, "embedded %ld inputs (%ld tokens) in %.3f s: %.1f inputs/s\n",
			inputs, tokens, (double)t_embed / 1e9,
			t_embed ? (double)inputs * 1e9 / (double)t_embed : 0.0);
	for (int i = 0; i < b.cap; i++)
		tok_ids_release(&b.ids[i]);
	free(b.ids);
	free(b.out);
	free(line);
	embedder_free(e);
	return bad ? 1 : 0;
}
