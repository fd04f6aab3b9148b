/*
 * run_embed.h - dyn run MODEL --embed (see run_embed.c): embed stdin's
 * lines with the embedding model in folder model, batch_size lines at a
 * time, on threads CPU threads (0: one per physical core); verbose: the
 * load time and the embedding rate (time in the encoder) on stderr.
 * Returns the exit status.
 */
#ifndef DYN_CMD_RUN_EMBED_H
#define DYN_CMD_RUN_EMBED_H

int cmd_run_embed(const char *model, long threads, long batch_size, int verbose);

#endif
