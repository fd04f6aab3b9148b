/*
 * stop.h - stop strings over streamed text.
 *
 * Text arrives in pieces (detokenized deltas); a stop string may span
 * pieces.  stop_scan() is given the text not yet sent (held-back text
 * plus the new piece) and says how much of it can be sent now: all of it
 * up to the earliest stop string (and then *hit is set to its length,
 * the first listed of those found there: nothing more may be sent), or all but the longest tail that could still be the start of
 * a stop string.  Pure; thread-safe.
 */
#ifndef DYN_FRONTEND_STOP_H
#define DYN_FRONTEND_STOP_H

#include <stddef.h>

/* Returns the number of leading bytes of text[0..len) safe to send. */
size_t stop_scan(const char *const *stops, size_t nstops, const char *text, size_t len,
		 int *hit);

#endif
