/*
 * tls.h - TLS contexts (OpenSSL) for the HTTP server and the request plane.
 *
 * A context holds this process's certificate chain and private key
 * (PEM files) and, optionally, the CA certificates (a PEM file) that
 * peers' certificates must chain to.  TLS 1.2 is the minimum.
 *
 * Server side (tls_ctx_new with TLS_SERVER): with a CA, a client must
 * present a certificate from it (mutual TLS), else the handshake fails.
 * Mutual side (TLS_MUTUAL, the request plane): one context both accepts
 * and connects; the CA is required, both ends present certificates and
 * verify the other's chain.  Membership of the cluster CA is the
 * identity: host names and addresses in certificates are not checked,
 * since peers are dialled by the addresses they advertise.
 *
 * Errors: tls_ctx_new returns 0 or -EINVAL with err_msg() naming the file
 * and OpenSSL's reason.  tls_last_error() formats and clears OpenSSL's
 * error queue of the calling thread, for log lines.
 */
#ifndef DYN_NET_TLS_H
#define DYN_NET_TLS_H

#include <stddef.h>

struct ssl_ctx_st;	/* OpenSSL's SSL_CTX */
struct ssl_st;		/* OpenSSL's SSL */

enum tls_role {
	TLS_SERVER,	/* accepts; verifies clients only when a CA is given */
	TLS_MUTUAL,	/* accepts and connects; peers verified both ways */
};

int tls_ctx_new(enum tls_role role, const char *cert, const char *key, const char *ca,
		struct ssl_ctx_st **out);
void tls_ctx_free(struct ssl_ctx_st *ctx);
/* OpenSSL's queued errors ("reason; reason"), or fallback when none;
 * buf is returned. */
const char *tls_last_error(char *buf, size_t size, const char *fallback);
/* Why a handshake failed (e: SSL_get_error's answer): the certificate
 * verification error, else OpenSSL's queued errors; buf is returned. */
const char *tls_handshake_error(struct ssl_st *ssl, int e, char *buf, size_t size);

#endif
