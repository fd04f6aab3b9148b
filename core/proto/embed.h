/*
 * embed.h - the "embed" request-plane protocol between frontends and
 * workers that serve an embedding model (their card has "embedding").
 *
 * Request (one JSON object): {"inputs":[[ids],[ids],..]}, each input the
 * token ids of one text with its special tokens, as the model takes them.
 * Response: one DATA frame {"embeddings":["B64",..],"prompt_tokens":N},
 * one vector per input in order, each the base64 of its floats as
 * little-endian IEEE-754 binary32 (exact, and a quarter of the JSON
 * text), then END.  Errors are ERROR frames: 400 bad input (with a message
 * naming it), 500 engine failure.
 *
 * Also the base64 coding the OpenAI API's encoding_format "base64" uses.
 * Pure functions; thread-safe; errors 0 / -EINVAL with err_msg().
 */
#ifndef DYN_PROTO_EMBED_H
#define DYN_PROTO_EMBED_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define EMBED_MAX_INPUTS 2048

struct embed_request {
	int32_t **ids;		/* [n], each lens[i] ids */
	size_t *lens;
	size_t n;
};

void embed_request_encode(const int32_t *const *ids, const size_t *lens, size_t n,
			  struct strbuf *out);
int embed_request_parse(const char *json, size_t len, struct embed_request *out);
void embed_request_release(struct embed_request *r);

/* Append the response for n vectors of dim floats. */
void embed_response_encode(const float *vecs, size_t n, int dim, long prompt_tokens,
			   struct strbuf *out);
/* Parse a response: *vecs (malloc'd, [*n, *dim]), *prompt_tokens. */
int embed_response_parse(const char *json, size_t len, float **vecs, size_t *n, int *dim,
			 long *prompt_tokens);

/* Append the base64 of v[0..n) as little-endian binary32. */
void embed_b64_floats(const float *v, size_t n, struct strbuf *out);

#endif
