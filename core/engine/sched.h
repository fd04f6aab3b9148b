/*
 * sched.h - the continuous-batching scheduler: which sequences run in the
 * next step, how many of their tokens, and the KV blocks they hold.
 *
 * Each step (sched_schedule) has a token budget (max_num_batched_tokens)
 * and a sequence limit (max_num_seqs).  Running sequences come first, in
 * arrival order: a decoding one needs 1 token, a prefilling one the rest of
 * its prompt or as much as the budget allows (chunked prefill).  Then
 * waiting sequences are admitted in order; on admission every leading full
 * block of the sequence that is in the prefix cache is reused (its tokens
 * are not recomputed; at least the last token always is, for its logits).
 * A waiting sequence is admitted only while the blocks in use plus the new
 * blocks its first chunk needs stay within (1 - watermark) of the pool
 * (watermark 0: the whole pool); running sequences may use the reserve.
 * When a running sequence needs a block and none is left, the newest
 * running sequence is preempted: its blocks are released (they stay
 * cached, so the recompute often hits the cache) and it goes back to the
 * head of the waiting queue, to be recomputed from its tokens.
 * A sequence with hold set (the engine waits on something else for it)
 * is passed over, running or waiting; those behind it go on.
 *
 * KV arriving from elsewhere: a sequence with kv_pending > 0 (its first
 * kv_pending prompt tokens' K/V are computed by another worker and copied
 * in) is admitted in its turn through the same path without computing
 * anything: it reuses the leading cached blocks those tokens fall in, gets
 * new blocks for the rest of them (under the same watermark rule, and like
 * any admission while fewer than max_num_seqs run) and moves to the
 * pending list (SEQ_PENDING_KV), which neither runs nor counts as running;
 * meanwhile its n_computed is the tokens its reused blocks hold.
 * sched_kv_filled() then marks the tokens written computed, registers the
 * full blocks they fill, and puts the sequence back at the head of the
 * queue, to compute only the rest of its prompt (from mid-block if the
 * fill ended there).
 *
 * Prompt logprobs: a sequence that asks for them (params.prompt_logprobs)
 * needs the logits of every prompt position, so it reuses nothing from the
 * prefix cache, and the prompt chunks of such sequences in one step hold
 * SCHED_PROMPT_LP_ROWS tokens at most (the rows of logits the step has room
 * for beside one per sequence).
 *
 * After the step's forward pass, sched_advance() marks the scheduled
 * tokens computed and registers each block that became full under its
 * sequence hash (block_hash.h), which publishes a KV "stored" event.
 *
 * Not thread-safe: the engine's step thread owns it.
 */
#ifndef DYN_ENGINE_SCHED_H
#define DYN_ENGINE_SCHED_H

#define SCHED_PROMPT_LP_ROWS 32

#include "core/kv/block_manager.h"
#include "core/engine/sampler.h"

#include <stdint.h>

enum seq_state { SEQ_WAITING, SEQ_RUNNING, SEQ_PENDING_KV };

struct seq {
	uint64_t id;
	enum seq_state state;
	int32_t *tokens;		/* prompt then output */
	int n_tokens, cap, n_prompt;
	int n_computed;			/* tokens whose K/V are in the pool */
	int32_t *table;			/* block ids, one per block_size tokens */
	int n_blocks, table_cap;
	/* Sequence and local hashes of the full blocks of tokens, computed
	 * once each as they are needed (tokens are only appended, so they
	 * never change); the first n_hashed are registered in the pool. */
	uint64_t *hashes, *locals;
	int n_known, hash_cap, n_hashed;
	int chunk;			/* tokens scheduled in this step */
	int admitted;			/* ever scheduled (first admission done) */
	int n_cached;			/* prompt tokens served from the prefix cache
					   at first admission (not those filled in) */
	int n_preemptions;
	int kv_pending;			/* > 0: tokens whose K/V arrive from elsewhere */
	int hold;			/* > 0: not scheduled for now (set by the
					   engine: its grammar mask is prepared) */
	/* owned by the engine */
	int n_prompt_lps;		/* prompt logprobs: positions reported */
	struct sampling_params params;
	struct sample_state rng;
	void *owner;
};

struct sched_opts {
	int max_num_seqs;
	int max_num_batched_tokens;
	int prefix_caching;		/* reuse cached leading blocks */
	double watermark;		/* fraction of the pool admission leaves free */
};

struct sched {
	struct sched_opts o;
	struct kv_manager *kv;
	struct seq **running;
	int n_running;
	struct seq **waiting;
	int n_waiting;
	struct seq **pending;		/* holding blocks, waiting for their K/V */
	int n_pending;
	int cap;			/* of the three arrays */
	/* counters */
	uint64_t cache_hit_tokens;	/* tokens not recomputed thanks to the cache */
	uint64_t preemptions;
};

void sched_init(struct sched *s, const struct sched_opts *o, struct kv_manager *kv);
void sched_release(struct sched *s);

/* A new sequence (tokens set, n_computed 0) joins the waiting queue. */
void sched_add(struct sched *s, struct seq *q);
/* Remove q wherever it is and release its blocks. */
void sched_remove(struct sched *s, struct seq *q);
/* Pick this step's sequences into out (capacity max_num_seqs); each has
 * chunk > 0.  Returns their number (0: nothing can run). */
int sched_schedule(struct sched *s, struct seq **out);
/* q (SEQ_PENDING_KV) has the K/V of its first n_tokens (0 .. kv_pending)
in its blocks; fewer than its reused blocks hold count as those.  See the
top of this file. */
void sched_kv_filled(struct sched *s, struct seq *q, int n_tokens);
/* Take q out of the scheduler keeping its blocks (the caller owns them
 * now and gives them back with sched_release_blocks). */
void sched_detach(struct sched *s, struct seq *q);
/* Give back every block of q, last to first. */
void sched_release_blocks(struct sched *s, struct seq *q);
/* The step ran: advance n_computed and register full blocks. */
void sched_advance(struct sched *s, struct seq **batch, int n);
/* Prompt tokens still to compute: every waiting sequence's tokens but
 * those its admission would find in the prefix cache now, plus the rest
 * of each running sequence that is prefilling (or recomputing after a
 * preemption). */
long sched_queued_prefill_tokens(const struct sched *s);
/* Blocks held by running sequences past their prompt (at most the blocks
 * in use: a shared prefix is counted per sequence, then capped). */
int sched_decoding_blocks(const struct sched *s);
/* Append a token to q's tokens. */
void seq_push(struct seq *q, int32_t token);
/* Free what the scheduler allocated in q (tokens, block table, hashes),
 * not q itself. */
void seq_release(struct seq *q);

#endif
