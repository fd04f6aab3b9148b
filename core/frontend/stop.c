/*
 * stop.c - stop strings over streamed text (see stop.h).
 */
#include "core/frontend/stop.h"

#include <string.h>

size_t stop_scan(const char *const *stops, size_t nstops, const char *text, size_t len,
		 int *hit)
{
	size_t first = len, hold = 0;

	*hit = 0;
	for (size_t i = 0; i < nstops; i++) {
		size_t sl = strlen(stops[i]);
		if (!sl)
			continue;
		const char *p = sl <= len ? memmem(text, len, stops[i], sl) : NULL;
		if (p && (size_t)(p - text) < first) {
			first = (size_t)(p - text);
			*hit = (int)sl;
		}
	}
	if (*hit)
		return first;
	for (size_t i = 0; i < nstops; i++) {
		size_t sl = strlen(stops[i]);
		size_t k = sl - (sl > 0);
		if (k > len)
			k = len;
		for (; k > hold; k--)
			if (!memcmp(text + len - k, stops[i], k)) {
				hold = k;
				break;
			}
	}
	return len - hold;
}
