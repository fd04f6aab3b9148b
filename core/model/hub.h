/*
 * hub.h - a Hugging Face hub client and its on-disk cache.
 *
 * Files are kept in the standard huggingface_hub cache layout, so that a
 * cache filled by dyn is usable by Python tools and the other way round:
 *
 *   CACHE/models--ORG--NAME/blobs/ETAG            file contents, named by ETag
 *   CACHE/models--ORG--NAME/snapshots/COMMIT/FILE symlink ../../blobs/ETAG
 *   CACHE/models--ORG--NAME/refs/REVISION         the commit REVISION points to
 *   CACHE/.locks/models--ORG--NAME/ETAG.lock      held while fetching a blob
 *
 * Environment (read at each call): HF_HUB_CACHE (else HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub),
 * HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (else the file
 * HF_HOME/token), HF_HUB_OFFLINE=1 (cache only), HF_HUB_ETAG_TIMEOUT and
 * HF_HUB_DOWNLOAD_TIMEOUT (seconds; default 10 and 30).
 *
 * Protocol: GET {endpoint}/api/models/{repo}/revision/{rev} gives the
 * commit ("sha") and the file list ("siblings"); HEAD
 * {endpoint}/{repo}/resolve/{commit}/{file} gives the ETag (X-Linked-Etag
 * for large files) and size (X-Linked-Size or Content-Length), possibly
 * on a redirect to a CDN; GET follows the redirect (the token is not sent
 * to another host).  A partial download is kept as blobs/ETAG.incomplete
 * and resumed with an HTTP Range request, within a run (transient errors
 * are retried) and across runs; five attempts in a row that leave it no
 * longer than it has been (a server that ignores Range starts it over)
 * end the call with an error naming the byte it stopped at.  A finished file must have the announced
 * size and match its ETag (SHA-256 for large files, git blob SHA-1 for
 * small ones) before it enters the cache.
 *
 * Downloaded: config.json, generation_config.json, tokenizer.json,
 * tokenizer_config.json, chat_template.jinja, special_tokens_map.json and
 * the safetensors weights the loader will use: the shards that
 * model.safetensors.index.json names (the index is fetched first), else
 * model.safetensors alone, else every top-level *.safetensors.  Other
 * weight formats are skipped.
 *
 * Threads: every call is blocking and self-contained (its own curl
 * handle); calls may run on several threads at once, and several
 * processes may fill one cache at once (per-blob file locks).
 */
#ifndef DYN_MODEL_HUB_H
#define DYN_MODEL_HUB_H

#include <stdint.h>

struct hub_progress {
	const char *repo;
	const char *file;		/* the file being fetched */
	int file_index;			/* 1-based, among files fetched this call */
	int file_count;
	uint64_t file_done, file_total;	/* bytes of this file (total 0 if unknown) */
	uint64_t done, total;		/* bytes over all files fetched this call */
	double elapsed_s;		/* since this call's first byte */
	int file_finished;		/* this file is complete */
};

/* Called on the downloading thread, at most every 100 ms per file plus
 * once when each file finishes. */
typedef void (*hub_progress_fn)(void *arg, const struct hub_progress *p);

struct hub_opts {
	const char *revision;		/* branch, tag or commit; NULL = "main" */
	int skip_weights;		/* config/tokenizer/template files only */
	hub_progress_fn progress;	/* NULL: none */
	void *progress_arg;
};

struct hub_result {
	char *snapshot_dir;		/* CACHE/models--ORG--NAME/snapshots/COMMIT */
	char *commit;			/* 40 hex digits */
	int from_cache;			/* offline, or the hub was unreachable */
	int files_fetched;		/* downloaded this call */
	uint64_t bytes_fetched;
};

/* 1 if s has the form ORG/NAME of a hub repository id. */
int hub_is_repo_id(const char *s);
/* 1 if rev can name a branch, tag or commit (no "..", no control bytes,
 * no leading '/'...). */
int hub_valid_revision(const char *rev);

/* The cache folder from the environment (malloc'd). */
char *hub_cache_dir(void);

/*
 * Make the snapshot of repo at opts->revision complete in the cache and
 * return where it is (res to be released with hub_result_free()).  Files
 * already in the snapshot are not fetched again.  Offline (HF_HUB_OFFLINE)
 * or when the hub cannot be reached, a cached snapshot is used if there is
 * one.  Errors: -EACCES for 401/403 (gated or private: the message names
 * HF_TOKEN), -ENOENT for an unknown repo, revision or file (named), -EIO
 * for network, size and checksum failures.
 */
int hub_snapshot(const char *repo, const struct hub_opts *opts, struct hub_result *res);

/* The cached snapshot of repo at revision (NULL = "main"), without any
 * network access; -ENOENT with a clear message if it is not cached. */
int hub_cached_snapshot(const char *repo, const char *revision, struct hub_result *res);

void hub_result_free(struct hub_result *res);

/* 1 if a file of this name may be fetched (weights: the safetensors
 * files and the index; hub_snapshot() then keeps the ones the checkpoint
 * uses). */
int hub_wanted_file(const char *name, int skip_weights);

#endif
