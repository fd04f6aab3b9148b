/*
 * rpc_int.h - what the files of "dyn rpc" share (internal to cmd/):
 *   rpc.c        serve, ls, call, and the verb dispatch
 *   rpc_diag.c   the echo/stream diagnostic endpoints and the raw-TCP
 *                baseline server
 *   rpc_bench.c  the benchmark
 * Everything runs on the calling thread's event loop except the raw
 * server, which runs its own threads.
 */
#ifndef DYN_CMD_RPC_INT_H
#define DYN_CMD_RPC_INT_H

#include <stddef.h>
#include <stdint.h>

struct rpc_call;

/* Raw baseline protocol: a 16-byte hello (u32 mode, u32 size, u64 count,
 * little-endian), then SIZE-byte messages echoed until EOF (ECHO) or COUNT
 * messages sent back to back (STREAM). */
#define RAW_CHUNK (256u << 10)		/* bytes per send() when streaming */
#define RAW_MODE_ECHO 1
#define RAW_MODE_STREAM 2

/* Endpoint handlers (net/rpc.h signature); rpc_diag_stream's arg is the
 * struct event_base the call runs on. */
void rpc_diag_echo(struct rpc_call *call, const void *payload, size_t len,
		   unsigned flags, void *arg);
void rpc_diag_stream(struct rpc_call *call, const void *payload, size_t len,
		     unsigned flags, void *arg);

/* Start the raw baseline server on host:port (0 = ephemeral, *bound set). */
int rpc_raw_server_start(const char *host, int port, int *bound);
void rpc_raw_hello(uint8_t h[16], uint32_t mode, uint32_t size, uint64_t count);


int rpc_bench(int argc, char **argv);

#endif
