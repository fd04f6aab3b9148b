/*
 * registry.h - the discovery registry: which models the store names,
 * their cards, and their workers grouped by role.  One module, used by
 * the frontend, the router service and (later) the planner; it only says
 * who exists, choosing among workers stays with its users.
 *
 * Fed by two store watches (dyn-store(5)):
 *   v1/models/NAME/ID     model cards (core/proto/card.h): one per worker
 *                         and served name; a worker exists while its card
 *                         does, a model while at least one card names it
 *   v1/instances/...      instance records (net/endpoint.h): a worker's
 *                         request-plane address and, in the record's
 *                         metadata, its role ("agg", "prefill", "decode";
 *                         agg when not given or before the record is seen)
 *                         and, for prefill and decode workers, its KV
 *                         layout ("kv":{"layout":FP,"block_size":B,..})
 *
 * Pools: a prefill worker whose KV layout or block size differs from one
 * of its model's decode workers' (those whose records give a layout)
 * cannot hand its blocks to them: the registry keeps it out of the
 * prefill pool (no worker_added for it, or worker_removed when a decode
 * worker of another layout comes) and logs that once at WARN, naming
 * both workers and both layouts.  It joins the pool when the layouts
 * agree again (the other decode worker leaves, or its record changes).
 *
 * With DISC_LOAD_TOKENIZER, the first card of a model brings the model's
 * tokenizer.json, tokenizer_config.json and chat_template.jinja from the
 * store and compiles the tokenizer and the chat template on the
 * registry's own thread, so that a watch callback never waits on the
 * store or on a compiler.  Until that is done the model is not ready:
 * disc_model_get() does not return it and subscribers have not heard of
 * it.  When it fails (a missing or corrupt file), the error is logged and
 * the model stays unusable until another card of it arrives, which tries
 * again with that card's files.  A later card with a different tokenizer
 * is logged and the first one's is kept.
 *
 * Events (disc_subscribe): model_added once a model is ready, then
 * worker_added for each worker it has; worker_added / worker_removed as
 * cards come and go (and when an instance record moves a worker to
 * another role); worker_removed for the last worker, then model_removed.
 * A model's struct stays valid (and its tokenizer usable) while someone
 * holds a reference (disc_model_get / disc_model_ref).
 *
 * Ownership and threads: every function is for the thread running the
 * event_base given to disc_new(), where events are delivered too; the
 * registry's compile thread only touches its own store handle and the
 * jobs handed to it.  Errors: 0 / -errno with err_msg().  Logging module
 * "discovery".
 */
#ifndef DYN_DISCOVERY_REGISTRY_H
#define DYN_DISCOVERY_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct strbuf;
struct card_file;
struct model_card;
struct tok;
struct tmpl_chat;
struct discovery;
struct disc_model;

enum disc_role {
	DISC_ROLE_AGG,			/* prefill and decode */
	DISC_ROLE_PREFILL,
	DISC_ROLE_DECODE,
};
#define DISC_NROLES 3

/* "agg", "prefill", "decode". */
const char *disc_role_name(enum disc_role role);
/* -EINVAL for any other name. */
int disc_role_parse(const char *name, enum disc_role *out);

/* One worker of one model: a card and what its instance record says. */
struct disc_worker {
	uint64_t id;			/* instance id */
	enum disc_role role;
	const char *path;		/* "NS/COMP/EP": the name to rpc_call() */
	const char *card_key;
	const struct model_card *card;	/* as last put */
	const char *kv_layout;		/* its record's kv.layout (NULL: none) */
	long kv_block_size;		/* its record's kv.block_size (0: none) */
};

/* Can a prefill worker of layout a (block size ba) hand its KV blocks to
 * a decode worker of layout b (bb)?  Both must give the same layout
 * fingerprint and block size; a prefill worker that gives none matches
 * no decode worker that does. */
int disc_kv_layouts_match(const char *a, long ba, const char *b, long bb);

enum {
	DISC_LOAD_TOKENIZER = 1 << 0,	/* models need their tokenizer to be ready */
};

struct disc_opts {
	unsigned flags;			/* DISC_LOAD_* */
	/* How the compile thread reads a card's file; NULL: card_fetch_file().
	 * It runs on that thread with a store handle of its own. */
	int (*fetch)(struct store *s, const struct card_file *f, struct strbuf *out);
};

/* Start watching store (opened with base).  o may be NULL (no flags). */
int disc_new(struct event_base *base, struct store *store, const struct disc_opts *o,
	     struct discovery **out);
/* Stop the watches and the compile thread (waiting for a job it runs),
 * drop the models (those still referenced live on until put); no event
 * is delivered from here on. */
void disc_free(struct discovery *d);

struct disc_events {
	void (*model_added)(struct disc_model *m, void *arg);
	void (*model_removed)(struct disc_model *m, void *arg);
	void (*worker_added)(struct disc_model *m, const struct disc_worker *w, void *arg);
	void (*worker_removed)(struct disc_model *m, const struct disc_worker *w, void *arg);
};
/* Deliver ev (any member may be NULL) to arg from now on; the models
 * already ready are announced at once.  At most 8 subscribers. */
int disc_subscribe(struct discovery *d, const struct disc_events *ev, void *arg);

/* 1 once the store's contents at the start have been read and every model
 * they named is ready or has failed to load (a frontend that starts
 * serving then knows the workers that were running). */
int disc_settled(const struct discovery *d);

/* The ready model of that name with a reference (+1), or NULL. */
struct disc_model *disc_model_get(struct discovery *d, const char *name);
void disc_model_ref(struct disc_model *m);
void disc_model_put(struct disc_model *m);

const char *disc_model_name(const struct disc_model *m);
/* Unix time the model was first seen. */
long disc_model_created(const struct disc_model *m);
/* The smallest context length its cards gave. */
long disc_model_context_length(const struct disc_model *m);
/* The first card's (the one whose files were loaded). */
const struct model_card *disc_model_card(const struct disc_model *m);
/* DISC_LOAD_TOKENIZER only (else NULL): immutable, usable from any
 * thread while the model is referenced. */
struct tok *disc_model_tok(const struct disc_model *m);
/* The chat template, NULL when the model has none or it does not
 * compile; *error (if not NULL) then gets the compile error or NULL. */
const struct tmpl_chat *disc_model_chat(const struct disc_model *m, const char **error);
/* Has the model gone from the store (no card names it any more)? */
int disc_model_removed(const struct disc_model *m);

/* The workers of a role, in the order of a pool where the last one
 * takes the place of a removed one.  Pointers stay valid until that
 * worker is removed. */
size_t disc_model_nworkers(const struct disc_model *m, enum disc_role role);
const struct disc_worker *disc_model_worker(const struct disc_model *m, enum disc_role role,
					    size_t i);

/* Prefill workers kept out of the prefill pool for their KV layout. */
size_t disc_model_kv_mismatches(const struct disc_model *m);

/* The request-plane address of instance id, NULL while no instance
 * record of it is in the store. */
const char *disc_address(const struct discovery *d, uint64_t id);

#endif
