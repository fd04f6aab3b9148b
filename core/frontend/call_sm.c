/*
 * call_sm.c - one choice's state machine (call_sm.h).
 */
#include "core/frontend/call_sm.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void fe_sm_init(struct fe_sm *s, int migration_limit)
{
	memset(s, 0, sizeof(*s));
	s->migration_limit = migration_limit > 0 ? migration_limit : 0;
}

void fe_sm_release(struct fe_sm *s)
{
	free(s->ids);
	memset(s, 0, sizeof(*s));
}

const int32_t *fe_sm_output(const struct fe_sm *s, size_t *n)
{
	*n = s->n_ids;
	return *n ? s->ids : NULL;
}

const char *fe_sm_state_name(enum fe_sm_state state)
{
	static const char *const names[] = { "route", "remote_step", "stream", "done", "failed" };
	return (unsigned)state < sizeof(names) / sizeof(names[0]) ? names[state] : "?";
}

static void keep_ids(struct fe_sm *s, const int32_t *ids, size_t n)
{
	if (s->n_ids + n > s->cap_ids) {
		s->cap_ids = s->n_ids + n > 2 * s->cap_ids ? s->n_ids + n : 2 * s->cap_ids;
		s->ids = xrealloc(s->ids, s->cap_ids * sizeof(*s->ids));
	}
	memcpy(s->ids + s->n_ids, ids, n * sizeof(*ids));
	s->n_ids += n;
}

/* A worker's failure another worker may not repeat: the transport failed
 * or the worker was unavailable (503: busy or draining).  A 400 or 500
 * would be the same anywhere. */
int fe_sm_migratable(int code)
{
	return code < 0 || code == 503;
}

static enum fe_sm_action to(struct fe_sm *s, enum fe_sm_state state, enum fe_sm_action act)
{
	s->state = state;
	return act;
}

enum fe_sm_action fe_sm_advance(struct fe_sm *s, const struct fe_sm_event *ev)
{
	if (s->state == FE_SM_DONE || s->state == FE_SM_FAILED)
		return FE_SM_NONE;
	switch (ev->kind) {
	case FE_SM_NO_WORKER:
	case FE_SM_BAD_PROMPT:
		return to(s, FE_SM_FAILED, FE_SM_FAIL);
	case FE_SM_CHOICE_END:
		return to(s, FE_SM_DONE, FE_SM_FINISH);
	default:
		break;
	}
	switch (s->state) {
	case FE_SM_ROUTE:
		if (ev->kind != FE_SM_ROUTED)
			return FE_SM_NONE;
		s->tries++;
		s->worker = ev->worker;
		s->prefill = ev->prefill;
		if (s->prefill)
			return to(s, FE_SM_REMOTE_STEP, FE_SM_CALL_PREFILL);
		return to(s, FE_SM_STREAM, FE_SM_CALL_WORKER);
	case FE_SM_REMOTE_STEP:
		/* done: the streaming worker has the prompt's KV; failed: it
		 * prefills the prompt itself */
		if (ev->kind == FE_SM_REMOTE_DONE || ev->kind == FE_SM_REMOTE_FAILED)
			return to(s, FE_SM_STREAM, FE_SM_CALL_WORKER);
		return FE_SM_NONE;
	case FE_SM_STREAM:
		if (ev->kind == FE_SM_TOKENS) {
			keep_ids(s, ev->ids, ev->n_ids);
			return FE_SM_NONE;
		}
		if (ev->kind != FE_SM_WORKER_ERROR)
			return FE_SM_NONE;
		/* Another worker goes on from the ids so far. */
		if (fe_sm_migratable(ev->code) && s->migrations < s->migration_limit) {
			s->migrations++;
			s->exclude = s->worker;
			s->worker = s->prefill = 0;
			return to(s, FE_SM_ROUTE, FE_SM_MIGRATE);
		}
		return to(s, FE_SM_FAILED, FE_SM_FAIL);
	default:
		return FE_SM_NONE;
	}
}
