/*
 * lineedit.c - the line editor of lineedit.h: termios raw mode, a byte
 * buffer edited at a cursor, redrawn in full after each key (lines are
 * short), and a bounded history.
 */
#include "cmd/lineedit.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define HISTORY_MAX 200

struct lineedit {
	char *hist[HISTORY_MAX];
	int n_hist;
};

struct lineedit *lineedit_new(void)
{
	return xcalloc(1, sizeof(struct lineedit));
}

void lineedit_free(struct lineedit *le)
{
	if (!le)
		return;
	for (int i = 0; i < le->n_hist; i++)
		free(le->hist[i]);
	free(le);
}

void lineedit_history_add(struct lineedit *le, const char *line)
{
	if (!*line || (le->n_hist && !strcmp(le->hist[le->n_hist - 1], line)))
		return;
	if (le->n_hist == HISTORY_MAX) {
		free(le->hist[0]);
		memmove(le->hist, le->hist + 1, (HISTORY_MAX - 1) * sizeof(char *));
		le->n_hist--;
	}
	le->hist[le->n_hist++] = xstrdup(line);
}

/* Columns taken by s[0..n): one per UTF-8 character. */
static size_t columns(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			c++;
	return c;
}

static void redraw(const char *prompt, const struct strbuf *b, size_t cur)
{
	struct strbuf o = STRBUF_INIT;
	sb_addf(&o, "\r%s", prompt);
	sb_add(&o, b->buf, b->len);
	sb_adds(&o, "\x1b[K\r");
	size_t col = columns(prompt, strlen(prompt)) + columns(b->buf, cur);
	if (col)
		sb_addf(&o, "\x1b[%zuC", col);
	if (write(STDOUT_FILENO, o.buf, o.len) < 0) {
		/* nothing sensible to do about a broken terminal */
	}
	sb_release(&o);
}

static size_t prev_char(const struct strbuf *b, size_t cur)
{
	while (cur > 0 && ((unsigned char)b->buf[--cur] & 0xC0) == 0x80)
		;
	return cur;
}

static size_t next_char(const struct strbuf *b, size_t cur)
{
	if (cur < b->len)
		cur++;
	while (cur < b->len && ((unsigned char)b->buf[cur] & 0xC0) == 0x80)
		cur++;
	return cur;
}

static int read_plain(char **line)
{
	struct strbuf b = STRBUF_INIT;
	int c;

	while ((c = getchar()) != EOF && c != '\n')
		sb_addch(&b, c);
	if (c == EOF && !b.len) {
		sb_release(&b);
		return LINEEDIT_EOF;
	}
	*line = sb_detach(&b, NULL);
	return LINEEDIT_OK;
}

static void set_line(struct strbuf *b, size_t *cur, const char *s)
{
	sb_reset(b);
	sb_adds(b, s);
	*cur = b->len;
}

#define BRACKETED_PASTE_ON "\x1b[?2004h"
#define BRACKETED_PASTE_OFF "\x1b[?2004l"
enum { KEY_DELETE = 256, KEY_PASTE_START, KEY_PASTE_END };

/* After an ESC: read the rest of the sequence (SS3 "ESC O x", or CSI
 * "ESC [ params final") and name the key: 'A'..'D' arrows, 'H'/'F'
 * home/end, KEY_DELETE, the bracketed-paste markers; 0 for anything else
 * (the whole sequence is consumed either way, so none of it becomes text). */
static int read_escape(void)
{
	unsigned char c, p[16];
	size_t np = 0;

	if (read(STDIN_FILENO, &c, 1) != 1)
		return 0;
	if (c == 'O')
		return read(STDIN_FILENO, &c, 1) == 1 ? c : 0;
	if (c != '[')
		return 0;
	for (;;) {
		if (read(STDIN_FILENO, &c, 1) != 1)
			return 0;
		if (c >= 0x40 && c <= 0x7e)
			break;		/* the final byte */
		if (np < sizeof(p))
			p[np++] = c;
	}
	if (c != '~')
		return np == 0 || (np == 3 && !memcmp(p, "1;5", 3)) ? c : 0;
	int n = 0;
	for (size_t i = 0; i < np && p[i] >= '0' && p[i] <= '9'; i++)
		n = n * 10 + (p[i] - '0');
	switch (n) {
	case 1: case 7: return 'H';
	case 4: case 8: return 'F';
	case 3: return KEY_DELETE;
	case 200: return KEY_PASTE_START;
	case 201: return KEY_PASTE_END;
	}
	return 0;
}

int lineedit_read(struct lineedit *le, const char *prompt, char **line)
{
	struct termios old, raw;
	struct strbuf b = STRBUF_INIT;		/* the row being edited */
	struct strbuf done = STRBUF_INIT;	/* rows before it, each + '\n' */
	size_t cur = 0;
	int hpos = le->n_hist, rc = LINEEDIT_OK, pasting = 0;
	char *saved = NULL;	/* the line being typed while browsing history */

	*line = NULL;
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &old) < 0) {
		fputs(prompt, stdout);
		fflush(stdout);
		return read_plain(line);
	}
	raw = old;
	raw.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
	raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
	raw.c_cc[VMIN] = 1;
	raw.c_cc[VTIME] = 0;
	/* TCSANOW, not TCSAFLUSH: what was typed ahead (or the rest of a
	 * paste) while the previous answer streamed is input, not noise. */
	tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	fflush(stdout);
	if (write(STDOUT_FILENO, BRACKETED_PASTE_ON, strlen(BRACKETED_PASTE_ON)) < 0) {
	}
	redraw(prompt, &b, cur);
	for (;;) {
		unsigned char c;
		ssize_t n = read(STDIN_FILENO, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = b.len ? LINEEDIT_OK : LINEEDIT_EOF;
			break;
		}
		if (c == '\r' || c == '\n') {
			/* Inside a paste every newline is text; a row ending in a
			 * backslash continues on the next row.  Either way the row
			 * is done and the next one gets the continuation prompt. */
			int cont = !pasting && b.len && b.buf[b.len - 1] == '\\';
			if (!pasting && !cont)
				break;
			if (cont)
				sb_setlen(&b, b.len - 1);
			sb_add(&done, b.buf, b.len);
			sb_addch(&done, '\n');
			sb_reset(&b);
			cur = 0;
			prompt = LINEEDIT_CONTINUE_PROMPT;
			if (write(STDOUT_FILENO, "\r\n", 2) < 0) {
			}
		} else if (c == 3) {		/* Ctrl-C */
			rc = LINEEDIT_INTERRUPT;
			sb_adds(&b, "^C");
			cur = b.len;
			redraw(prompt, &b, cur);
			break;
		} else if (c == 4) {		/* Ctrl-D */
			if (!b.len) {
				rc = LINEEDIT_EOF;
				break;
			}
			if (cur < b.len)
				sb_remove(&b, cur, next_char(&b, cur) - cur);
		} else if (c == 127 || c == 8) {
			size_t p = prev_char(&b, cur);
			sb_remove(&b, p, cur - p);
			cur = p;
		} else if (c == 1) {
			cur = 0;
		} else if (c == 5) {
			cur = b.len;
		} else if (c == 2) {
			cur = prev_char(&b, cur);
		} else if (c == 6) {
			cur = next_char(&b, cur);
		} else if (c == 21) {		/* Ctrl-U */
			sb_remove(&b, 0, cur);
			cur = 0;
		} else if (c == 11) {		/* Ctrl-K */
			sb_setlen(&b, cur);
		} else if (c == 23) {		/* Ctrl-W */
			size_t p = cur;
			while (p > 0 && b.buf[p - 1] == ' ')
				p--;
			while (p > 0 && b.buf[p - 1] != ' ')
				p--;
			sb_remove(&b, p, cur - p);
			cur = p;
		} else if (c == 12) {		/* Ctrl-L */
			if (write(STDOUT_FILENO, "\x1b[H\x1b[2J", 7) < 0) {
			}
		} else if (c == 16 || c == 14 || c == 27) {
			int key = c == 16 ? 'A' : c == 14 ? 'B' : 0;
			if (c == 27)
				key = read_escape();
			if (key == KEY_PASTE_START) {
				pasting = 1;
			} else if (key == KEY_PASTE_END) {
				pasting = 0;
			} else if (key == 'A' && hpos > 0) {
				if (hpos == le->n_hist) {
					free(saved);
					saved = xstrndup(b.buf, b.len);
				}
				set_line(&b, &cur, le->hist[--hpos]);
			} else if (key == 'B' && hpos < le->n_hist) {
				hpos++;
				set_line(&b, &cur, hpos == le->n_hist ? (saved ? saved : "") : le->hist[hpos]);
			} else if (key == 'C') {
				cur = next_char(&b, cur);
			} else if (key == 'D') {
				cur = prev_char(&b, cur);
			} else if (key == 'H') {
				cur = 0;
			} else if (key == 'F') {
				cur = b.len;
			} else if (key == KEY_DELETE && cur < b.len) {
				sb_remove(&b, cur, next_char(&b, cur) - cur);
			}
		} else if (c >= 32 || c == '\t') {
			char ch = (char)c;
			sb_grow(&b, 1);
			memmove(b.buf + cur + 1, b.buf + cur, b.len - cur);
			b.buf[cur] = ch;
			sb_setlen(&b, b.len + 1);
			cur++;
		}
		redraw(prompt, &b, cur);
	}
	if (write(STDOUT_FILENO, BRACKETED_PASTE_OFF "\r\n", strlen(BRACKETED_PASTE_OFF) + 2) < 0) {
	}
	tcsetattr(STDIN_FILENO, TCSANOW, &old);
	free(saved);
	if (rc == LINEEDIT_INTERRUPT || (rc == LINEEDIT_EOF && !done.len)) {
		sb_release(&b);
		sb_release(&done);
		return rc;
	}
	sb_add(&done, b.buf, b.len);
	sb_release(&b);
	*line = sb_detach(&done, NULL);
	return LINEEDIT_OK;
}
