/*
 * embed_engine.c - the embed engine (see embed_engine.h).
 */
#include "core/serve/embed_engine.h"
#include "core/embed/embed.h"
#include "core/err.h"
#include "core/platform.h"
#include "core/proto/embed.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/rpc.h"

#include <errno.h>
#include <stdlib.h>

struct embed_engine {
	struct embedder *emb;
	struct worker_stats st;
};

int embed_engine_new(const char *dir, int threads, struct embed_engine **out)
{
	struct embed_engine *e = xcalloc(1, sizeof(*e));
	int rc = embedder_open(dir, threads > 0 ? threads : platform_cores(), &e->emb);
	if (rc < 0) {
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

void embed_engine_free(struct embed_engine *e)
{
	if (!e)
		return;
	embedder_free(e->emb);
	free(e);
}

void embed_engine_stats(const struct embed_engine *e, struct worker_stats *out)
{
	*out = e->st;
}

int embed_engine_dim(const struct embed_engine *e) { return embedder_dim(e->emb); }
int embed_engine_truncatable(const struct embed_engine *e) { return embedder_truncatable(e->emb); }
int embed_engine_max_tokens(const struct embed_engine *e) { return embedder_max_tokens(e->emb); }

void embed_engine_handle(struct rpc_call *call, const void *payload, size_t len,
			 unsigned flags, void *arg)
{
	struct embed_engine *e = arg;
	struct embed_request req;
	struct strbuf out = STRBUF_INIT;
	size_t vocab = tok_vocab_size(embedder_tok(e->emb));
	long tokens = 0;
	int dim = embedder_dim(e->emb), rc;

	(void)flags;
	e->st.requests++;
	if (embed_request_parse(payload, len, &req) < 0) {
		e->st.failed++;
		rpc_call_error(call, 400, "%s", err_msg());
		return;
	}
	for (size_t i = 0; i < req.n; i++) {
		tokens += (long)req.lens[i];
		for (size_t k = 0; k < req.lens[i]; k++)
			if ((size_t)req.ids[i][k] >= vocab) {
				e->st.failed++;
				rpc_call_error(call, 400, "inputs[%zu]: token id %d is outside the "
					       "vocabulary (%zu)", i, req.ids[i][k], vocab);
				embed_request_release(&req);
				return;
			}
	}
	float *vecs = xmalloc(req.n * (size_t)dim * sizeof(float));
	e->st.active++;
	rc = embedder_run(e->emb, (const int32_t *const *)req.ids, req.lens, (int)req.n, vecs);
	e->st.active--;
	if (rc < 0) {
		e->st.failed++;
		rpc_call_error(call, rc == -E2BIG || rc == -EINVAL ? 400 : 500, "%s", err_msg());
	} else {
		e->st.finished++;
		e->st.prompt_tokens += (uint64_t)tokens;
		embed_response_encode(vecs, req.n, dim, tokens, &out);
		rpc_call_send(call, out.buf, out.len, 0);
		rpc_call_end(call, NULL, 0, 0);
	}
	free(vecs);
	sb_release(&out);
	embed_request_release(&req);
}
