/*
 * endpoint.h - the component model on top of the request plane:
 * namespace / component / endpoint / instance.
 *
 * A process serves endpoints on one rpc_server (one TCP port) and
 * registers one instance record per endpoint in the discovery store,
 * bound to its process lease, so the record vanishes when the process
 * stops renewing it.  Key and value (dyn-store(5)):
 *
 *   v1/instances/{namespace}/{component}/{endpoint}/{instance id, 16 hex}
 *   {"namespace":..,"component":..,"endpoint":..,"instance_id":"<hex>",
 *    "address":"HOST:PORT","transport":"tcp","pid":N,"metadata":{..}}
 *
 * The endpoint name on the wire (REQUEST frames) is "NS/COMP/EP".
 * Names are 1-64 characters of [A-Za-z0-9_.-].
 *
 * Clients discover instances with endpoint_watch() (a live list kept from
 * a store watch, with added/removed callbacks and round-robin / random /
 * by-id selection) or list them once with endpoint_list().
 *
 * Threading: like the store and rpc objects they use, everything here
 * belongs to the thread running the event_base.  Errors: 0 / -errno with
 * err_msg().  Logging module: "endpoint".
 */
#ifndef DYN_NET_ENDPOINT_H
#define DYN_NET_ENDPOINT_H

#include "net/rpc.h"

#include <stddef.h>
#include <stdint.h>

struct runtime;
struct strbuf;
struct store;

#define ENDPOINT_NAME_MAX 64
#define ENDPOINT_KEY_ROOT "v1/instances/"

/* Is s a valid namespace/component/endpoint name? */
int endpoint_name_valid(const char *s);

/* Split "NS[/COMP[/EP]]" into parts (unused ones set to ""); nparts
 * receives how many were given.  min_parts: how many are required. */
int endpoint_path_parse(const char *path, int min_parts,
			char ns[ENDPOINT_NAME_MAX + 1], char comp[ENDPOINT_NAME_MAX + 1],
			char ep[ENDPOINT_NAME_MAX + 1], int *nparts);

/* The store prefix for a (partial) path: "v1/instances/NS/COMP/EP/";
 * components may be "" to stop early ("v1/instances/NS/").  Appends. */
void endpoint_prefix(struct strbuf *out, const char *ns, const char *comp,
		     const char *ep);

/* One instance record, decoded. */
struct endpoint_instance {
	uint64_t id;
	char *ns, *component, *endpoint;
	char *address;		/* "HOST:PORT" */
	char *transport;	/* "tcp" */
	long pid;
	char *metadata;		/* JSON object text ("{}" if none) */
	char *key;		/* the store key */
	char *path;		/* "NS/COMP/EP": the name to rpc_call() */
};

/* Longest host name in an instance address (DNS's limit). */
#define ENDPOINT_HOST_MAX 253

/* Is address a usable "HOST:PORT" or "[IPV6]:PORT" (port 1-65535, a
 * host name or IPv4 address of [A-Za-z0-9._-], an IPv6 address in
 * brackets, optionally with a %zone)? */
int endpoint_address_valid(const char *address);

/* Decode a record (key + JSON value).  -EINVAL if malformed: not a JSON
 * object, namespace/component/endpoint/address/instance_id missing or not
 * strings, a bad instance_id, or an address endpoint_address_valid()
 * rejects.  Discovery skips such records with a warning. */
int endpoint_instance_parse(const char *key, const char *json, size_t len,
			    struct endpoint_instance *out);
void endpoint_instance_clear(struct endpoint_instance *inst);

/* ---- serving ----------------------------------------------------------- */

struct endpoint_service;

/*
 * Serve NS/COMP/EP with fn on srv (which must be listening) and register
 * the instance record under rt->lease (instance id = the lease id, or a
 * random 64-bit id without a lease).  metadata: a JSON object text or
 * NULL.  The record is deleted at once when the runtime begins shutting
 * down (a hook is added to rt), so clients stop picking this instance
 * while in-flight calls drain, and put again under a new lease when the
 * process lease was lost (store/process.h); the instance id stays.
 */
int endpoint_serve(struct runtime *rt, struct rpc_server *srv, const char *ns,
		   const char *comp, const char *ep, rpc_handler_fn fn, void *arg,
		   const char *metadata, struct endpoint_service **out);
uint64_t endpoint_service_id(const struct endpoint_service *e);
const char *endpoint_service_key(const struct endpoint_service *e);
/* Delete the record now (idempotent; the handler stays registered). */
int endpoint_service_deregister(struct endpoint_service *e);
/* Deregister (if still registered) and free.  The runtime keeps a
 * pointer to e for its shutdown hook: free only after runtime_run() has
 * returned (or when the runtime will never be run). */
void endpoint_service_free(struct endpoint_service *e);

/* ---- discovery --------------------------------------------------------- */

/* All instances under "NS[/COMP[/EP]]" ("" = all), one store read.
 * Malformed records are skipped with a warning. */
int endpoint_list(struct store *s, const char *path,
		  struct endpoint_instance **out, size_t *n);
void endpoint_instances_free(struct endpoint_instance *v, size_t n);

struct endpoint_watch;

struct endpoint_watch_cbs {
	/* A new instance, or a changed record (inst replaces the old one). */
	void (*added)(const struct endpoint_instance *inst, void *arg);
	/* The instance is gone; inst is valid during the call only. */
	void (*removed)(const struct endpoint_instance *inst, void *arg);
	/* The initial contents have been delivered. */
	void (*synced)(void *arg);
};

enum endpoint_pick {
	ENDPOINT_PICK_ROUND_ROBIN,
	ENDPOINT_PICK_RANDOM,
};

/* Watch NS/COMP/EP (store opened with an event_base).  cbs may be NULL. */
int endpoint_watch(struct store *s, const char *ns, const char *comp, const char *ep,
		   const struct endpoint_watch_cbs *cbs, void *arg,
		   struct endpoint_watch **out);
void endpoint_watch_free(struct endpoint_watch *w);
int endpoint_watch_synced(const struct endpoint_watch *w);
size_t endpoint_watch_count(const struct endpoint_watch *w);
/* Instances in key order; pointers stay valid until that instance is
 * removed or replaced. */
const struct endpoint_instance *endpoint_watch_at(const struct endpoint_watch *w,
						  size_t i);
const struct endpoint_instance *endpoint_watch_find(const struct endpoint_watch *w,
						    uint64_t id);
/* NULL when there are none. */
const struct endpoint_instance *endpoint_watch_pick(struct endpoint_watch *w,
						    enum endpoint_pick how);

#endif
