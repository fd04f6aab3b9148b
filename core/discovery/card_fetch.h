/*
 * card_fetch.h - the reading side of model cards (core/proto/card.h): a
 * file a card names, fetched chunk by chunk from the store and checked
 * against the size and digest the card gives.
 *
 * Threading: like the store (blocking).  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_DISCOVERY_CARD_FETCH_H
#define DYN_DISCOVERY_CARD_FETCH_H

struct store;
struct strbuf;
struct card_file;

/* Append f's bytes to out.  -EIO when size or digest differ (out is then
 * as it was). */
int card_fetch_file(struct store *s, const struct card_file *f, struct strbuf *out);

#endif
