/*
 * call_sm.h - the life of one choice of a generation request in the
 * frontend as a state machine: which step it is at, which worker it is
 * on, the tokens it got so far, and what to do on each event.
 *
 *          ROUTED, prefill named         REMOTE_DONE / REMOTE_FAILED
 *   ROUTE -----------------------> REMOTE_STEP ---------------------+
 *     |  ROUTED, none                                               v
 *     +---------------------------------------------------------> STREAM
 *   ROUTE <- WORKER_ERROR that another worker may not repeat, with a
 *            migration left (MIGRATE)
 *   DONE  <- CHOICE_END (FINISH)
 *   FAILED <- NO_WORKER, BAD_PROMPT, other WORKER_ERRORs (FAIL)
 *
 * A request has one machine per choice: handler.c runs a prompt's n
 * samples at once, each with its own, and ends them all together when
 * one fails or the client leaves.
 *
 * REMOTE_STEP is where disaggregated serving processes the prompt on the
 * prefill worker the router named before the decode worker streams
 * (docs/disaggregation.md): REMOTE_DONE when it answered with the
 * location of the prompt's KV blocks, which the streaming worker then
 * fetches; REMOTE_FAILED when it failed, timed out or did not say where
 * they are, and the streaming worker prefills the prompt itself.
 *
 * Migration: a streaming worker whose call fails in a way another worker
 * may not repeat (fe_sm_migratable(): the transport failed, connection
 * refused or lost; or a 503: busy, draining, or its grace period ended)
 * hands the choice on: it is routed again, not to that worker, and the
 * next worker goes on from the ids the choice got so far (fe_sm_output():
 * the caller sends the prompt followed by them), at most migration_limit
 * times per choice.  Before the first token that is a plain re-send, with
 * a remote step of its own when the new plan names a prefill worker.
 *
 * Pure: no I/O; the caller performs the action fe_sm_advance() returns.
 * Used from one thread.
 */
#ifndef DYN_FRONTEND_CALL_SM_H
#define DYN_FRONTEND_CALL_SM_H

#include <stddef.h>
#include <stdint.h>

enum fe_sm_state {
	FE_SM_ROUTE,			/* choosing the workers */
	FE_SM_REMOTE_STEP,		/* the prompt on the prefill worker */
	FE_SM_STREAM,			/* the streaming worker sends tokens */
	FE_SM_DONE,			/* the choice ended */
	FE_SM_FAILED,			/* it failed */
};

enum fe_sm_event_kind {
	FE_SM_ROUTED,			/* worker (and prefill, 0: none) chosen */
	FE_SM_NO_WORKER,		/* no worker could be chosen or called */
	FE_SM_BAD_PROMPT,		/* the choice's prompt was refused */
	FE_SM_REMOTE_DONE,		/* the prefill worker processed the prompt */
	FE_SM_REMOTE_FAILED,		/* ... or could not */
	FE_SM_TOKENS,			/* the streaming worker sent ids */
	FE_SM_WORKER_ERROR,		/* the streaming worker's call failed */
	FE_SM_CHOICE_END,		/* the choice finished (end, stop, length) */
};

struct fe_sm_event {
	enum fe_sm_event_kind kind;
	uint64_t worker, prefill;	/* ROUTED */
	const int32_t *ids;		/* TOKENS */
	size_t n_ids;
	int code;			/* WORKER_ERROR: < 0 transport, else status */
};

enum fe_sm_action {
	FE_SM_NONE,			/* keep going */
	FE_SM_CALL_PREFILL,		/* start the remote step on sm->prefill */
	FE_SM_CALL_WORKER,		/* call sm->worker */
	FE_SM_MIGRATE,			/* route again, not to sm->exclude, and go
					   on from fe_sm_output() */
	FE_SM_FINISH,			/* the choice is complete */
	FE_SM_FAIL,			/* answer with the event's error */
};

struct fe_sm {
	enum fe_sm_state state;
	int32_t *ids;			/* the ids the choice got so far (in
					   order; across migrations) */
	size_t n_ids, cap_ids;
	int tries;			/* workers called */
	int migrations, migration_limit;	/* the choice's, and the most */
	uint64_t worker, prefill;	/* 0: none */
	uint64_t exclude;		/* the worker that just failed (0: none) */
};

/* A machine in ROUTE for a choice that may migrate up to migration_limit
 * times (0: never). */
void fe_sm_init(struct fe_sm *s, int migration_limit);
/* Whether a failed call (WORKER_ERROR code) is one migration handles. */
int fe_sm_migratable(int code);
/* Also on a zeroed struct fe_sm (never initialised). */
void fe_sm_release(struct fe_sm *s);
/* Take event ev: the new state is in s->state; returns what to do.  An
 * event that does not apply in the current state is ignored (NONE). */
enum fe_sm_action fe_sm_advance(struct fe_sm *s, const struct fe_sm_event *ev);
/* The ids the choice got so far (*n of them; NULL when none). */
const int32_t *fe_sm_output(const struct fe_sm *s, size_t *n);
const char *fe_sm_state_name(enum fe_sm_state state);

#endif
