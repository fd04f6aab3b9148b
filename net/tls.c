/*
 * tls.c - OpenSSL contexts from PEM files (see tls.h).
 */
#include "net/tls.h"
#include "core/err.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

const char *tls_last_error(char *buf, size_t size, const char *fallback)
{
	size_t len = 0;
	unsigned long e;

	buf[0] = 0;
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		const char *reason = ERR_reason_error_string(e);
		if (len < size)
			len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "; " : "",
						reason ? reason : one);
	}
	if (!buf[0])
		snprintf(buf, size, "%s", fallback);
	return buf;
}

const char *tls_handshake_error(SSL *ssl, int e, char *buf, size_t size)
{
	long v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK) {
		snprintf(buf, size, "certificate: %s", X509_verify_cert_error_string(v));
		return buf;
	}
	return tls_last_error(buf, size, e == SSL_ERROR_SYSCALL ? "connection closed"
							    : "handshake refused");
}

static int fail(SSL_CTX *ctx, const char *what, const char *path)
{
	char why[512];
	tls_last_error(why, sizeof(why), "unreadable");
	SSL_CTX_free(ctx);
	return err_set(-EINVAL, "%s %s: %s", what, path, why);
}

int tls_ctx_new(enum tls_role role, const char *cert, const char *key, const char *ca,
		struct ssl_ctx_st **out)
{
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx)
		return fail(NULL, "TLS", "context");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Renegotiation would let a read want a write and back: refused. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	/* A peer that closes without close_notify has just closed: frames
	 * carry their own lengths. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return fail(ctx, "certificate", cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		return fail(ctx, "private key", key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return fail(ctx, "private key", key);
	if (role == TLS_MUTUAL && (!ca || !*ca)) {
		SSL_CTX_free(ctx);
		return err_set(-EINVAL, "mutual TLS needs CA certificates");
	}
	if (ca && *ca) {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
			return fail(ctx, "CA certificates", ca);
		/* Clients learn which CA to present a certificate from. */
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
		if (!names)
			return fail(ctx, "CA certificates", ca);
		SSL_CTX_set_client_CA_list(ctx, names);
		/* resumed sessions of verified clients need it */
		SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"dyn", 3);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	*out = ctx;
	return 0;
}

void tls_ctx_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}
