/*
 * workload.h - what dyn bench sends: the prompt, its token count and the
 * output length of every request, from one of three sources.
 *
 *   synthetic  input/output lengths drawn around --isl/--osl (fixed,
 *              normal or uniform), optional shared prefixes (groups of
 *              requests whose prompts start with the same prefix_len
 *              tokens) and multi-turn conversations
 *   trace      Mooncake-style JSONL: timestamp (ms), input_length,
 *              output_length, hash_ids; every hash id stands for the same
 *              block_len-token block wherever it appears, the last block cut
 *              to input_length; lengths (and the block) scaled by scale
 *   prompts    JSONL prompt file: one object a line with "text" (or
 *              "prompt"), optional "output_length" (or "max_tokens") and
 *              "timestamp" (ms)
 *
 * Files are checked line by line (an error names FILE:LINE): one JSON
 * object per line and nothing after it; lengths whole numbers up to 1e8
 * (the --isl cap, after the length scale), hash ids whole numbers,
 * timestamps finite and >= 0, and present on every line with
 * fixed_schedule.
 *
 * Prompt text comes from words.h (exact token counts with a tokenizer).
 * Request i of a workload is always the same request (deterministic in
 * the seed), so runs are repeatable and comparable.
 *
 * Ownership: the workload owns its trace/file data and borrows the words
 * and tokenizer (they must outlive it).  Not thread-safe.
 */
#ifndef DYN_BENCH_WORKLOAD_H
#define DYN_BENCH_WORKLOAD_H

#include "core/bench/words.h"
#include "core/strbuf.h"

#include <stddef.h>
#include <stdint.h>

struct tok;

enum bench_dist { BENCH_DIST_FIXED, BENCH_DIST_NORMAL, BENCH_DIST_UNIFORM };

struct bench_workload_cfg {
	const char *trace;		/* Mooncake JSONL path, or NULL */
	const char *prompts;		/* prompt JSONL path, or NULL */
	long isl, osl;			/* synthetic mean lengths (tokens) */
	double isl_stddev, osl_stddev;
	enum bench_dist dist;
	long prefix_len;		/* shared prefix tokens (0 = none) */
	long prefix_groups;		/* number of distinct prefixes */
	int turns;			/* turns per conversation (>= 1) */
	long block_len;			/* trace: tokens per hash id */
	double scale;			/* trace: length scale factor */
	uint64_t seed;
	const struct bench_words *words;
	const struct tok *tok;		/* NULL: counts by construction only */
	long tok_offset;		/* bench_words_check() offset */
	int fixed_schedule;		/* files: every line needs a timestamp */
};

struct bench_item {
	struct strbuf prompt;	/* the (user) text */
	long isl;		/* its tokens (-1 if unknown) */
	long osl;		/* output tokens to ask for (0 = server default) */
	double ts_ms;		/* trace/file timestamp, -1 if none */
	int turns;		/* turns of this conversation */
};

struct bench_workload;

int bench_workload_new(const struct bench_workload_cfg *cfg, struct bench_workload **out);
void bench_workload_free(struct bench_workload *wl);
/* Entries in the trace or prompt file (0 for synthetic: unbounded). */
long bench_workload_count(const struct bench_workload *wl);
/* Request number index (files and traces wrap around); turn 0 is the
 * conversation's first message, later turns the follow-up messages.
 * it->prompt is reset and filled. */
int bench_workload_item(struct bench_workload *wl, long index, int turn, struct bench_item *it);
/* Warm-up request number k: a prompt of its own (words seeded apart from
 * every measured request's: no shared prefix, no trace block, no line of
 * a prompt file), so warm-up does not fill the server's prefix cache with
 * what the measured requests will ask for.  Lengths: a trace entry's
 * (entry k), --isl/--osl drawn as for synthetic requests, or for a prompt
 * file --isl with the line's output length.  One turn. */
int bench_workload_warmup_item(struct bench_workload *wl, long k, struct bench_item *it);
/* Describe the workload in one line ("synthetic isl=... osl=..."). */
void bench_workload_describe(const struct bench_workload *wl, struct strbuf *out);

void bench_item_init(struct bench_item *it);
void bench_item_release(struct bench_item *it);

#endif
