/*
 * run.h - the load generator: one benchmark run against an
 * OpenAI-compatible streaming endpoint, producing one record per request.
 *
 * Load shapes:
 *   closed loop     concurrency requests in flight; each finished request
 *                   is replaced at once (rate == 0, !fixed_schedule)
 *   open loop       arrivals at rate requests/s, Poisson (exponential
 *                   gaps) or constant; concurrency > 0 caps the requests in
 *                   flight: arrivals beyond it wait in a FIFO and are sent
 *                   in arrival order, each as the workload request it
 *                   arrived as, with its due time as sched_ms
 *   fixed schedule  each request at its trace timestamp / speedup (capped
 *                   the same way)
 * The run issues num_requests requests (after warmup ones, which are run
 * first as a closed loop at the same concurrency with prompts of their own,
 * bench_workload_warmup_item, and excluded), or stops issuing after
 * duration_s, whichever comes first.  Multi-turn conversations send each
 * next turn (the history plus a new user message) when the previous turn
 * completes.
 *
 * Timing: every timestamp is CLOCK_MONOTONIC at byte arrival (see
 * net/http_client.h).  A token arrival is an SSE event carrying non-empty
 * content (chat delta.content or reasoning_content, completions text).
 * TTFT = first token arrival - request start; ITL = every gap between
 * consecutive token arrivals; TPOT = (last - first token) / (output
 * tokens - 1); e2e = last byte - start; output tokens = the server's
 * usage.completion_tokens when it reports it, else the token events.
 *
 * Errors by kind: connect, timeout, disconnect (connection lost, or the
 * stream ended without [DONE] or a finish_reason), http_NNN, stream_error
 * (an error object inside the stream, or an SSE line or event over
 * SSE_MAX_LINE, which ends the request), empty (no token), api_error (a
 * 2xx reply that is an OpenAI {"error": ...} object, not a stream),
 * not_sse (any other 2xx reply that is no event stream), other.
 *
 * Ownership: the result owns its records (bench_run_free).  The run uses
 * its own event loop on the calling thread and blocks until done.
 */
#ifndef DYN_BENCH_RUN_H
#define DYN_BENCH_RUN_H

#include "core/bench/workload.h"

#include <stddef.h>
#include <stdint.h>

struct tok;

struct bench_rec {
	long index;		/* workload request number */
	int turn;
	long isl;		/* prompt tokens by construction (-1 unknown) */
	long osl;		/* output tokens asked for (0: not set) */
	double sched_ms;	/* when it was due, ms from run start (-1: closed loop) */
	double start_ms;	/* when it was sent, ms from run start */
	double ttft_ms, e2e_ms, tpot_ms;	/* -1 when not measured */
	double *itl;		/* inter-token gaps, ms */
	size_t n_itl;
	long events;		/* token events */
	long usage_in, usage_out;	/* server usage (-1 if none) */
	long out_tokens;	/* usage_out, else events */
	long tok_out;		/* tokenizer count of the received text (-1) */
	long status;		/* HTTP status (0 if none) */
	char error[24];		/* "" when the request succeeded */
	char *error_msg;	/* detail, or NULL */
	char *text;		/* the received text */
};

struct bench_progress {
	double elapsed_s;
	long sent, done, errors, in_flight;
	double out_tok_s;	/* output tokens/s over the last interval */
	double cpu_pct;		/* this process, over the last interval */
};

struct bench_run_cfg {
	const char *url;		/* full endpoint URL */
	const char *model;
	const char *api_key;		/* NULL: no Authorization header */
	int chat;			/* chat/completions vs completions */
	long concurrency;		/* closed loop N, or open-loop cap (0 none) */
	double rate;			/* requests/s (0: closed loop) */
	int poisson;			/* open loop: Poisson arrivals */
	int fixed_schedule;		/* use item timestamps */
	double speedup;			/* fixed schedule: time compression */
	double duration_s;		/* 0: no limit */
	long num_requests;		/* 0: no limit (then duration_s must be set) */
	long warmup;			/* warm-up requests */
	long timeout_ms;		/* per request, 0 none */
	int ignore_eos;			/* send ignore_eos and min_tokens = osl */
	const char *extra_body;		/* JSON object whose members are added */
	long first_index;		/* workload number of the first request */
	uint64_t seed;			/* arrival times */
	void (*progress)(void *arg, const struct bench_progress *p);
	void *progress_arg;
	double progress_s;		/* interval (0: no progress calls) */
	/* Interruption: when stop_fd (> 0) becomes readable the run stops
	 * issuing, waits up to grace_s for the requests in flight, then
	 * cancels the rest and returns what completed (result.partial). */
	int stop_fd;
	double grace_s;
	/* Multi-turn with a tokenizer: count each later turn's whole prompt
	 * (the history plus the new message) with it.  NULL: unknown (-1). */
	const struct tok *tok;
	long tok_offset;		/* bench_words_check() offset */
};

struct bench_run_result {
	struct bench_rec *recs;
	size_t n;
	double wall_s;			/* measured phase: first start to last end */
	double cpu_pct;			/* this process's CPU use over the run */
	long warmup_done, warmup_errors;
	int partial;			/* stopped early by stop_fd */
	long cancelled;			/* in flight when the grace ran out (no record) */
};

/* Run to completion.  Returns 0 (errors of single requests are in the
 * records) or a negative code for a failure of the run itself. */
int bench_run(const struct bench_run_cfg *cfg, struct bench_workload *wl,
	      struct bench_run_result *out);
void bench_run_free(struct bench_run_result *r);

/* GET the OpenAI model list at models_url (".../v1/models") and return
 * the first model's id in *out (malloc'ed).  -ENOENT when the list is
 * empty, another negative code when the request fails (message in err). */
int bench_first_model(const char *models_url, const char *api_key, long timeout_ms,
		      char **out);

#endif
