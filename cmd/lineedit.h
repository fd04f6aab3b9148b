/*
 * lineedit.h - a small line editor for interactive prompts (dyn run):
 * cursor movement, editing keys and a history, on a terminal in raw mode.
 *
 * Keys: Left/Right, Ctrl-B/F; Home/End, Ctrl-A/E; Backspace, Delete,
 * Ctrl-D (delete, or end of input on an empty line); Ctrl-U/K (kill to
 * start/end), Ctrl-W (kill word); Up/Down, Ctrl-P/N (history); Ctrl-L
 * (clear screen); Ctrl-C (abandon the line); Enter.  UTF-8 text moves by
 * characters.  When stdin is not a terminal it reads plain lines.
 *
 * Several rows make one entry: a row ending in a backslash continues on
 * the next (the backslash is dropped), and a paste keeps its newlines
 * (the terminal's bracketed-paste mode marks it).  Finished rows are not
 * edited again; the entry comes back joined by '\n'.  Input typed ahead
 * while no read was pending is kept, never flushed.
 *
 * Not thread-safe; one editor per terminal.
 */
#ifndef DYN_CMD_LINEEDIT_H
#define DYN_CMD_LINEEDIT_H

#include <stddef.h>

struct lineedit;

struct lineedit *lineedit_new(void);
void lineedit_free(struct lineedit *le);

enum { LINEEDIT_OK = 0, LINEEDIT_EOF = -1, LINEEDIT_INTERRUPT = -2 };

/* The prompt of a continuation row. */
#define LINEEDIT_CONTINUE_PROMPT "... "

/* Read one line (without its newline) into a malloc'd *line. */
int lineedit_read(struct lineedit *le, const char *prompt, char **line);
/* Remember a line for Up/Down. */
void lineedit_history_add(struct lineedit *le, const char *line);

#endif
