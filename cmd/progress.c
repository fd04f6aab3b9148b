/*
 * progress.c - showing hub download progress (see cmd.h): a redrawn bar
 * on a terminal, periodic log lines otherwise (e.g. under Slurm, where
 * stderr is a file and a bar would fill it with carriage returns); and
 * a bar while weights are read from local disk.
 */
#include "cmd/cmd.h"
#include "core/log.h"
#include "core/model/hub.h"
#include "core/util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_EVERY_NS 10000000000ull	/* non-terminal: one line per 10 s */
#define DRAW_EVERY_NS 100000000ull	/* terminal: 10 redraws per second */

/* "123.4 MB" (decimal units, like the hub's web pages). */
static void human(char *buf, size_t size, double bytes)
{
	static const char *const unit[] = { "B", "kB", "MB", "GB", "TB" };
	int u = 0;

	while (bytes >= 1000 && u < 4) {
		bytes /= 1000;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

static void draw_bar(struct cmd_progress *cp, const struct hub_progress *p)
{
	char done[32], total[32], rate[32], bar[31];
	double frac = p->file_total ? (double)p->file_done / (double)p->file_total : 1;
	int fill = (int)(frac * 30);

	memset(bar, ' ', 30);
	memset(bar, '#', (size_t)(fill > 30 ? 30 : fill));
	bar[30] = '\0';
	human(done, sizeof(done), (double)p->file_done);
	human(total, sizeof(total), (double)p->file_total);
	human(rate, sizeof(rate), p->elapsed_s > 0 ? (double)p->done / p->elapsed_s : 0);
	fprintf(stderr, "\r[%d/%d] %-28.28s %3d%% |%s| %s / %s  %s/s\033[K", p->file_index,
		p->file_count, p->file, (int)(frac * 100), bar, done, total, rate);
	cp->drawn = 1;
	if (p->file_finished) {
		fputc('\n', stderr);
		cp->drawn = 0;
	}
	fflush(stderr);
}

void cmd_hub_progress(void *arg, const struct hub_progress *p)
{
	struct cmd_progress *cp = arg;
	unsigned long long now = mono_ns();

	if (!cp->checked) {
		cp->checked = 1;
		cp->tty = isatty(STDERR_FILENO);
		cp->last_ns = now;
	}
	if (cp->tty) {
		if (p->file_finished || now - cp->last_ns >= DRAW_EVERY_NS) {
			cp->last_ns = now;
			draw_bar(cp, p);
		}
		return;
	}
	char done[32], total[32], rate[32];
	human(done, sizeof(done), (double)p->file_done);
	human(total, sizeof(total), (double)p->file_total);
	human(rate, sizeof(rate), p->elapsed_s > 0 ? (double)p->done / p->elapsed_s : 0);
	if (p->file_finished) {
		LOG_INFO("hub", "downloaded %s/%s (%s) [%d/%d]", p->repo, p->file, total,
			 p->file_index, p->file_count);
	} else if (now - cp->last_ns >= LOG_EVERY_NS) {
		cp->last_ns = now;
		LOG_INFO("hub", "downloading %s/%s: %s of %s (%d%%), %s/s [%d/%d]", p->repo,
			 p->file, done, total,
			 p->file_total ? (int)(100.0 * (double)p->file_done / (double)p->file_total) : 0,
			 rate, p->file_index, p->file_count);
	}
}

void cmd_progress_done(struct cmd_progress *cp)
{
	if (cp->drawn) {
		fputc('\n', stderr);
		cp->drawn = 0;
	}
}

void cmd_load_progress(void *arg, uint64_t done, uint64_t total)
{
	struct cmd_progress *cp = arg;
	unsigned long long now = mono_ns();
	char d[32], t[32], rate[32], bar[31];

	if (!cp->checked) {
		cp->checked = 1;
		cp->tty = isatty(STDERR_FILENO);
		cp->last_ns = now;
		cp->start_ns = now;
	}
	if (!cp->tty)
		return;
	if (done >= total) {	/* finished: leave the line clean */
		if (cp->drawn)
			fputs("\r\033[K", stderr);
		cp->drawn = 0;
		fflush(stderr);
		return;
	}
	if (cp->drawn && now - cp->last_ns < DRAW_EVERY_NS)
		return;
	cp->last_ns = now;
	double frac = total ? (double)done / (double)total : 1;
	double secs = (double)(now - cp->start_ns) / 1e9;
	int fill = (int)(frac * 30);
	memset(bar, ' ', 30);
	memset(bar, '#', (size_t)(fill > 30 ? 30 : fill));
	bar[30] = '\0';
	human(d, sizeof(d), (double)done);
	human(t, sizeof(t), (double)total);
	human(rate, sizeof(rate), secs > 0 ? (double)done / secs : 0);
	fprintf(stderr, "\rloading weights %3d%% |%s| %s / %s  %s/s\033[K", (int)(frac * 100), bar,
		d, t, rate);
	cp->drawn = 1;
	fflush(stderr);
}
