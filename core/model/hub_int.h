/*
 * hub_int.h - internals shared by hub_cache.c and hub.c (not public API).
 */
#ifndef DYN_MODEL_HUB_INT_H
#define DYN_MODEL_HUB_INT_H

/* The hub settings of the environment, read once per call. */
struct hub_env {
	char *cache;		/* HF_HUB_CACHE ... */
	char *endpoint;		/* HF_ENDPOINT, no trailing '/' */
	char *token;		/* HF_TOKEN or HF_HOME/token, or NULL */
	int offline;		/* HF_HUB_OFFLINE */
	long etag_timeout;	/* s, metadata requests */
	long download_timeout;	/* s without progress before a download is retried */
};

/* 0, or -EINVAL when HF_TOKEN holds a control character (it would end
 * up in a request header); *e is filled either way: free it. */
int hub_env_load(struct hub_env *e);
void hub_env_free(struct hub_env *e);

int hub_is_commit(const char *s);

/* CACHE/models--ORG--NAME and CACHE/.locks/models--ORG--NAME (malloc'd). */
char *hub_repo_dir(const char *cache, const char *repo);
char *hub_lock_dir(const char *cache, const char *repo);

/* refs/REVISION -> commit (nothing for a commit revision). */
int hub_write_ref(const char *repo_dir, const char *revision, const char *commit);
int hub_read_ref(const char *repo_dir, const char *revision, char commit[41]);
/* snapshots/COMMIT/FILE -> ../../blobs/ETAG, replacing any old link. */
int hub_link_snapshot(const char *repo_dir, const char *commit, const char *file,
		      const char *etag);

#endif
