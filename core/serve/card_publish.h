/*
 * card_publish.h - a worker's side of model cards (core/proto/card.h):
 * the card and the model's files, chunked, written to the store bound to
 * the worker's lease, so that they vanish with it.
 *
 * Threading: like the store.  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_SERVE_CARD_PUBLISH_H
#define DYN_SERVE_CARD_PUBLISH_H

#include <stdint.h>

struct store;
struct model_card;

/* Publish the card c and the files found in dir under lease.  Fills
 * c->files; config.json and tokenizer.json must exist.  *key_out (if not
 * NULL) gets the card's key, to free. */
int card_publish(struct store *s, int64_t lease, struct model_card *c,
		 const char *dir, char **key_out);

#endif
