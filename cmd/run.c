/*
 * run.c - "dyn run MODEL": load a model into the built-in engine and chat
 * with it in the terminal, or answer one prompt (--prompt, or text piped
 * on stdin) and exit.
 *
 * The conversation is kept as OpenAI-style messages and rendered through
 * the model's chat template every turn (tokenized without extra special
 * tokens, as transformers' apply_chat_template does); --raw feeds the text
 * as-is (with the tokenizer's BOS) for base models.  Tokens stream from the
 * engine's thread through a small queue to this thread, which detokenizes
 * incrementally and prints.  Ctrl-C during an answer cancels the request;
 * Ctrl-C at the prompt abandons the line; Ctrl-D or /exit quits.
 *
 * --http serves the OpenAI API instead: the worker component and a
 * frontend in this process, finding each other through a private store.
 */
#include "cmd/cmd.h"
#include "cmd/run_embed.h"
#include "cmd/engine_opts.h"
#include "cmd/http_url.h"
#include "cmd/lineedit.h"
#include "core/engine/engine.h"
#include "core/engine/sampling_defaults.h"
#include "core/err.h"
#include "core/frontend/frontend.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/proto/card.h"
#include "core/router/disagg.h"
#include "core/runtime.h"
#include "core/serve/worker.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "store/process.h"
#include "store/store.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static struct cmd_engine_args eng = CMD_ENGINE_ARGS_INIT;
static int http_mode;
static long http_port = 8000;
static const char *http_host = "0.0.0.0";
static const char *api_key = "", *served_name = "", *logits_file = "";
static const char *tool_parser = "", *rsn_parser = "";
static const char *prompt_text, *system_text;
static const char *temperature_s, *top_p_s, *top_k_s, *min_p_s, *repetition_penalty_s;
static int raw_mode, verbose, ignore_eos, embed_mode;
static long max_tokens, min_tokens, seed = -1, logprobs_n = -1;
static double presence_penalty, frequency_penalty;

static const struct opt run_opts[] = {
	{ "prompt", OPT_STRING, &prompt_text, "TEXT", "answer TEXT once and exit", 0, 0, NULL },
	{ "system", OPT_STRING, &system_text, "TEXT", "system message of the conversation", 0, 0,
	  NULL },
	{ "raw", OPT_BOOL, &raw_mode, NULL, "no chat template: continue the text as given", 0, 0,
	  NULL },
	{ "max-tokens", OPT_INT, &max_tokens, "N", "tokens per answer (0: until EOS or the context ends)",
	  0, 1e9, NULL },
	{ "min-tokens", OPT_INT, &min_tokens, "N", "tokens before EOS may end an answer", 0, 1e9,
	  NULL },
	{ "temperature", OPT_STRING, &temperature_s, "T",
	  "sampling temperature, 0 = greedy (default: the model's generation_config, else 0)",
	  0, 0, NULL },
	{ "top-k", OPT_STRING, &top_k_s, "K", "sample from the K most likely tokens (0: all)", 0, 0,
	  NULL },
	{ "top-p", OPT_STRING, &top_p_s, "P", "nucleus sampling: smallest set with mass P", 0, 0,
	  NULL },
	{ "min-p", OPT_STRING, &min_p_s, "P", "drop tokens below P times the most likely", 0, 0,
	  NULL },
	{ "repetition-penalty", OPT_STRING, &repetition_penalty_s, "R",
	  "penalise tokens already seen (1: off)", 0, 0, NULL },
	{ "presence-penalty", OPT_DOUBLE, &presence_penalty, "P",
	  "penalise tokens present in the answer", -2, 2, NULL },
	{ "frequency-penalty", OPT_DOUBLE, &frequency_penalty, "F",
	  "penalise tokens by their count in the answer", -2, 2, NULL },
	{ "seed", OPT_INT, &seed, "N", "sampling seed (-1: random)", -1, 2147483647, NULL },
	{ "ignore-eos", OPT_BOOL, &ignore_eos, NULL, "keep generating after EOS", 0, 0, NULL },
	{ "verbose", OPT_BOOL, &verbose, NULL, "print load time and prompt/generation speed", 0, 0,
	  NULL },
	{ "logprobs", OPT_INT, &logprobs_n, "N",
	  "after each answer, print every token's logprob and the N most likely alternatives on "
	  "stderr (-1: off)", -1, SAMPLING_MAX_LOGPROBS, NULL },
	{ "logits-file", OPT_STRING, &logits_file, "FILE",
	  "after each answer, append its prompt and output token ids and the full logits each "
	  "output token was sampled from to FILE as a JSON line (diagnostics; not with --http)",
	  0, 0, NULL },
	{ "embed", OPT_BOOL, &embed_mode, NULL,
	  "embedding model (BERT-style, or a decoder with sentence-transformers' modules.json): "
	  "print each stdin line's embedding as a JSON array (--max-num-seqs lines a batch)",
	  0, 0, NULL },
	CMD_ENGINE_OPTS(eng),
	{ "http", OPT_BOOL, &http_mode, NULL,
	  "serve the OpenAI-compatible HTTP API (frontend and engine in this process)", 0, 0,
	  NULL },
	{ "http-port", OPT_INT, &http_port, "PORT", "--http: port (0 = any free port)", 0, 65535,
	  NULL },
	{ "http-host", OPT_STRING, &http_host, "ADDR", "--http: address to listen on", 0, 0, NULL },
	{ "api-key", OPT_STRING, &api_key, "KEY",
	  "--http: require 'Authorization: Bearer KEY' on /v1/ requests", 0, 0, NULL },
	{ "served-model-name", OPT_STRING, &served_name, "NAME",
	  "--http: the model's name in the API (default: the hub id or the folder's name)", 0, 0,
	  NULL },
	CMD_PARSER_OPTS(tool_parser, rsn_parser, "--http: "),
	{ 0 },
};

static const struct opt_cmd run_cmd = {
	.name = "run",
	.usage = "[OPTIONS] MODEL",
	.summary = "Chat with a model in the terminal, or answer one prompt.  MODEL is a folder,\n"
		   "a .safetensors file or index, a .gguf file, or a hub id ORG/NAME (fetched\n"
		   "if needed).",
	.details = "Interactive: /help lists the commands, /reset clears the conversation,\n"
		   "/exit (or Ctrl-D) quits, Ctrl-C stops the current answer; a line ending\n"
		   "in \\ continues on the next, and a paste keeps its newlines.  With --prompt\n"
		   "TEXT, or text piped on stdin, the answer is printed once and dyn exits.",
	.opts = run_opts,
};

/* ---- streaming from the engine thread ----------------------------------- */

struct tok_logprobs {
	float logprob;
	int n_top;
	int32_t top_ids[SAMPLING_MAX_LOGPROBS];
	float top_logprobs[SAMPLING_MAX_LOGPROBS];
};

struct stream {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int32_t *tokens;
	struct tok_logprobs *lp;	/* [cap] when --logprobs */
	int n, cap, done;
	enum engine_finish finish;
	const char *error;
	int n_prompt, n_cached;
	uint64_t t_first_ns;
};

static void on_output(void *arg, const struct engine_output *o)
{
	struct stream *s = arg;

	pthread_mutex_lock(&s->mu);
	if (o->token >= 0) {
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 256;
			s->tokens = xrealloc(s->tokens, (size_t)s->cap * sizeof(int32_t));
			if (logprobs_n >= 0)
				s->lp = xrealloc(s->lp, (size_t)s->cap * sizeof(*s->lp));
		}
		if (logprobs_n >= 0) {
			struct tok_logprobs *l = &s->lp[s->n];
			l->logprob = o->logprob;
			l->n_top = o->n_top < SAMPLING_MAX_LOGPROBS ? o->n_top : SAMPLING_MAX_LOGPROBS;
			for (int i = 0; i < l->n_top; i++) {
				l->top_ids[i] = o->top_ids[i];
				l->top_logprobs[i] = o->top_logprobs[i];
			}
		}
		s->tokens[s->n++] = o->token;
		if (s->n == 1)
			s->t_first_ns = mono_ns();
	}
	if (o->finish) {
		s->done = 1;
		s->finish = o->finish;
		s->error = o->error ? xstrdup(o->error) : NULL;
		s->n_cached = o->n_cached;
	}
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

struct session {
	FILE *logits_out;	/* --logits-file */
	/* the answer's logits rows as JSON arrays, appended on the step
	 * thread before each token's output (read once the answer is done) */
	struct strbuf logits;
	struct model *m;
	struct engine *e;
	struct tok *tok;
	struct tmpl_chat *chat;
	struct sampling_params params;
	struct strbuf messages;	/* JSON array body, without brackets */
	int tty_out;
	int interactive;	/* a person at the prompt: hints name commands */
};

/* engine_opts.on_logits for --logits-file: one JSON array per sampled
 * token (run has one request at a time). */
static void on_logits(void *arg, uint64_t id, int position, const float *logits, int vocab)
{
	struct session *ss = arg;

	(void)id;
	(void)position;
	sb_adds(&ss->logits, ss->logits.len ? ",[" : "[");
	for (int i = 0; i < vocab; i++)
		sb_addf(&ss->logits, i ? ",%.9g" : "%.9g", (double)logits[i]);
	sb_addch(&ss->logits, ']');
}

/* --logits-file: the answer to ids as one JSON line,
 *     {"prompt":[IDS],"tokens":[IDS],"logits":[[VOCAB FLOATS] per token]} */
static void write_logits(struct session *ss, const struct tok_ids *ids, const int32_t *tokens,
			 int n)
{
	struct strbuf line = STRBUF_INIT;

	sb_adds(&line, "{\"prompt\":[");
	for (size_t i = 0; i < ids->n; i++)
		sb_addf(&line, i ? ",%d" : "%d", ids->v[i]);
	sb_adds(&line, "],\"tokens\":[");
	for (int i = 0; i < n; i++)
		sb_addf(&line, i ? ",%d" : "%d", tokens[i]);
	sb_addf(&line, "],\"logits\":[%s]}\n", ss->logits.len ? ss->logits.buf : "");
	fwrite(line.buf, 1, line.len, ss->logits_out);
	fflush(ss->logits_out);
	sb_release(&line);
	sb_reset(&ss->logits);
}

static void add_message(struct strbuf *msgs, const char *role, const char *text, size_t len)
{
	if (msgs->len)
		sb_addch(msgs, ',');
	sb_addf(msgs, "{\"role\":\"%s\",\"content\":", role);
	sb_add_json_str(msgs, text, len);
	sb_addch(msgs, '}');
}

#define LOGPROB_CONTEXT 6	/* text tokens a token's text is read after */

/* id's text as the API shows it: what it adds after the context, as a
 * JSON string ("\n" escaped, special tokens shown). */
static void token_json(const struct tok *tok, const int32_t *ctx, size_t n, int32_t id,
		       struct strbuf *out)
{
	struct strbuf t = STRBUF_INIT;
	tok_decode_after(tok, ctx, n, id, &t);
	sb_add_json_str(out, t.buf ? t.buf : "", t.len);
	sb_release(&t);
}

/* --logprobs N: one line per generated token on stderr,
 *     logprob TOKEN LOGPROB | ALT1 LOGPROB1 ALT2 LOGPROB2 ...
 * tokens as JSON strings of the text each adds after the tokens before it
 * (" and", as the API shows it), logprobs of the raw model distribution. */
static void print_logprobs(const struct tok *tok, const struct tok_ids *prompt,
			   const struct stream *s)
{
	struct strbuf line = STRBUF_INIT;
	int32_t ctx[LOGPROB_CONTEXT];
	size_t nctx = 0;

	for (size_t i = prompt->n > LOGPROB_CONTEXT ? prompt->n - LOGPROB_CONTEXT : 0;
	     i < prompt->n; i++)
		if (!tok_is_special(tok, prompt->v[i]))
			ctx[nctx++] = prompt->v[i];
	for (int i = 0; i < s->n; i++) {
		const struct tok_logprobs *l = &s->lp[i];
		sb_reset(&line);
		sb_addf(&line, "logprob ");
		token_json(tok, ctx, nctx, s->tokens[i], &line);
		sb_addf(&line, " %.4f |", l->logprob);
		for (int k = 0; k < l->n_top; k++) {
			sb_addch(&line, ' ');
			token_json(tok, ctx, nctx, l->top_ids[k], &line);
			sb_addf(&line, " %.4f", l->top_logprobs[k]);
		}
		fprintf(stderr, "%s\n", line.buf);
		if (tok_is_special(tok, s->tokens[i]))
			continue;
		if (nctx == LOGPROB_CONTEXT)
			memmove(ctx, ctx + 1, (LOGPROB_CONTEXT - 1) * sizeof(ctx[0]));
		else
			nctx++;
		ctx[nctx - 1] = s->tokens[i];
	}
	sb_release(&line);
}

/* While an answer streams, what is typed is not echoed into it (a ^C
 * or the next question typed ahead would land in the middle of the text);
 * it stays in the terminal's input and the line editor shows it next. */
struct saved_terminal {
	int saved;
	struct termios old;
};

static void quiet_terminal(struct saved_terminal *t)
{
	t->saved = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->old) == 0;
	if (t->saved) {
		struct termios q = t->old;
		q.c_lflag &= ~(tcflag_t)(ECHO | ECHOCTL);
		tcsetattr(STDIN_FILENO, TCSANOW, &q);
	}
}

static void restore_terminal(struct saved_terminal *t)
{
	if (t->saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &t->old);
}

/* Generate an answer to ids; its text goes to stdout and into answer. */
static int generate(struct session *ss, const struct tok_ids *ids, struct strbuf *answer)
{
	struct stream s = { 0 };
	struct tok_stream *ts = tok_stream_new(ss->tok, 1);
	struct strbuf delta = STRBUF_INIT;
	uint64_t id, t0 = mono_ns();
	int printed = 0, rc = 0;
	char prev_last = '\n';
	struct saved_terminal term = { 0 };

	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	tok_stream_prime(ts, ids->v, ids->n);
	struct engine_request r = { .prompt = ids->v, .n_prompt = (int)ids->n, .params = ss->params,
				    .on_output = on_output, .arg = &s };
	if ((rc = engine_submit(ss->e, &r, &id)) < 0) {
		if (rc == -E2BIG)	/* the history grew past the context */
			fprintf(stderr, "dyn run: the conversation has %zu tokens and the context "
					"holds %d%s\n", ids->n, engine_max_model_len(ss->e),
				ss->interactive ? "; /reset clears it" : "");
		else
			fprintf(stderr, "dyn run: %s\n", err_msg());
		rc = -1;
		goto out;
	}
	interrupted = 0;
	quiet_terminal(&term);
	for (;;) {
		pthread_mutex_lock(&s.mu);
		while (printed == s.n && !s.done && !interrupted) {
			struct timespec ts_wait;
			clock_gettime(CLOCK_REALTIME, &ts_wait);
			ts_wait.tv_nsec += 50000000;
			if (ts_wait.tv_nsec >= 1000000000) {
				ts_wait.tv_sec++;
				ts_wait.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&s.cv, &s.mu, &ts_wait);
		}
		int n = s.n, done = s.done;
		pthread_mutex_unlock(&s.mu);
		if (interrupted) {
			interrupted = 0;
			engine_cancel(ss->e, id);
		}
		for (; printed < n; printed++) {
			int32_t t = s.tokens[printed];
			int is_last_stop = done && printed == n - 1 && s.finish == ENGINE_FINISH_STOP;
			if (is_last_stop)
				continue;	/* EOS / stop token: not part of the text */
			sb_reset(&delta);
			tok_stream_put(ts, t, &delta);
			fwrite(delta.buf, 1, delta.len, stdout);
			sb_add(answer, delta.buf, delta.len);
			if (delta.len)
				prev_last = delta.buf[delta.len - 1];
		}
		fflush(stdout);
		if (done)
			break;
	}
	sb_reset(&delta);
	tok_stream_flush(ts, &delta);
	fwrite(delta.buf, 1, delta.len, stdout);
	sb_add(answer, delta.buf, delta.len);
	if (delta.len)
		prev_last = delta.buf[delta.len - 1];
	if (prev_last != '\n')
		fputc('\n', stdout);
	fflush(stdout);
	restore_terminal(&term);
	if (s.finish == ENGINE_FINISH_ERROR) {
		fprintf(stderr, "dyn run: %s\n", s.error ? s.error : "generation failed");
		rc = -1;
	} else if (s.finish == ENGINE_FINISH_ABORT && ss->tty_out) {
		fprintf(stderr, "[stopped]\n");
	} else if (s.finish == ENGINE_FINISH_LENGTH &&
		   (ss->params.max_tokens <= 0 || s.n < ss->params.max_tokens)) {
		fprintf(stderr, "[cut: the context (%d tokens) is full%s]\n",
			engine_max_model_len(ss->e),
			ss->interactive ? "; /reset clears the conversation" : "");
	}
	if (logprobs_n >= 0)
		print_logprobs(ss->tok, ids, &s);
	if (ss->logits_out)
		write_logits(ss, ids, s.tokens, s.n);
	if (verbose) {
		uint64_t t_end = mono_ns();
		double pre = s.t_first_ns ? (double)(s.t_first_ns - t0) / 1e9 : 0;
		double gen = s.t_first_ns ? (double)(t_end - s.t_first_ns) / 1e9 : 0;
		int computed = (int)ids->n - s.n_cached;
		fprintf(stderr,
			"prompt: %zu tokens (%d cached) in %.3f s, %.1f tokens/s; "
			"generation: %d tokens in %.3f s, %.1f tokens/s; finish: %s\n",
			ids->n, s.n_cached, pre, pre > 0 ? computed / pre : 0, s.n, gen,
			gen > 0 && s.n > 1 ? (s.n - 1) / gen : 0, engine_finish_name(s.finish));
	}
out:
	free(s.tokens);
	free((void *)s.error);
	sb_release(&delta);
	free(s.lp);
	tok_stream_free(ts);
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	return rc;
}

/* One user turn: render, tokenize, answer, and keep the history. */
static int turn(struct session *ss, const char *text, size_t len)
{
	struct strbuf rendered = STRBUF_INIT, answer = STRBUF_INIT;
	struct tok_ids ids = TOK_IDS_INIT;
	size_t keep = ss->messages.len;
	int rc;

	if (raw_mode || !ss->chat) {
		rc = tok_encode(ss->tok, text, len, 1, &ids);
	} else {
		add_message(&ss->messages, "user", text, len);
		struct strbuf json = STRBUF_INIT;
		sb_addf(&json, "[%s]", ss->messages.buf);
		struct tmpl_chat_request req = { .messages_json = json.buf,
						 .add_generation_prompt = true };
		rc = tmpl_chat_render(ss->chat, &req, NULL, &rendered);
		sb_release(&json);
		if (rc == 0)
			rc = tok_encode(ss->tok, rendered.buf, rendered.len, 0, &ids);
	}
	if (rc < 0) {
		fprintf(stderr, "dyn run: %s\n", err_msg());
		sb_setlen(&ss->messages, keep);
		goto out;
	}
	if (ids.n == 0) {
		fprintf(stderr, "dyn run: the prompt is empty\n");
		rc = -1;
		goto out;
	}
	rc = generate(ss, &ids, &answer);
	if (rc < 0)
		sb_setlen(&ss->messages, keep);
	else if (!raw_mode && ss->chat)
		add_message(&ss->messages, "assistant", answer.buf, answer.len);
out:
	sb_release(&rendered);
	sb_release(&answer);
	tok_ids_release(&ids);
	return rc;
}

static void reset_history(struct session *ss)
{
	sb_reset(&ss->messages);
	if (system_text && *system_text)
		add_message(&ss->messages, "system", system_text, strlen(system_text));
}

static int parse_opt_double(const char *s, double *out, const char *what, double min, double max)
{
	if (!s)
		return 0;
	if (parse_double(s, out, what) < 0 || *out < min || *out > max)
		return cmd_usage_error("run", "%s: expected a number in [%g, %g], got '%s'", what, min,
				       max, s);
	return 0;
}

/* The model's defaults (greedy when it gives no temperature, as
 * dyn-run(1) says), then the options given. */
static int build_params(const struct model *m, struct sampling_params *p)
{
	double v;

	sampling_defaults(&m->desc.gen, 0, p);
	v = p->temperature;
	if (parse_opt_double(temperature_s, &v, "--temperature", 0, 1e6))
		return EXIT_USAGE;
	p->temperature = v;
	v = p->top_p;
	if (parse_opt_double(top_p_s, &v, "--top-p", 1e-9, 1))
		return EXIT_USAGE;
	p->top_p = v;
	v = p->top_k;
	if (parse_opt_double(top_k_s, &v, "--top-k", 0, 1e9))
		return EXIT_USAGE;
	p->top_k = (int)v;
	v = p->min_p;
	if (parse_opt_double(min_p_s, &v, "--min-p", 0, 1))
		return EXIT_USAGE;
	p->min_p = v;
	v = p->repetition_penalty;
	if (parse_opt_double(repetition_penalty_s, &v, "--repetition-penalty", 1e-6, 1e6))
		return EXIT_USAGE;
	p->repetition_penalty = v;
	p->presence_penalty = presence_penalty;
	p->frequency_penalty = frequency_penalty;
	p->max_tokens = (int)max_tokens;
	p->min_tokens = (int)min_tokens;
	p->ignore_eos = ignore_eos;
	p->logprobs = (int)logprobs_n;
	if (seed >= 0) {
		p->has_seed = 1;
		p->seed = (uint64_t)seed;
	}
	return 0;
}

static const char *const chat_help =
	"/help   this list\n"
	"/reset  forget the conversation (keeps --system)\n"
	"/exit   quit (also /quit, or Ctrl-D on an empty line)\n"
	"Ctrl-C stops an answer; a line ending in \\ continues on the next;\n"
	"a paste keeps its newlines; begin a line with a space to send text that\n"
	"starts with '/'.\n";

/* A line that is a command: '/' and a word, nothing else. */
static int is_command(const char *line)
{
	if (line[0] != '/' || !line[1])
		return 0;
	for (const char *p = line + 1; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return 0;
	return 1;
}

static int interactive(struct session *ss)
{
	struct lineedit *le = lineedit_new();
	int tty = isatty(STDIN_FILENO);

	ss->interactive = 1;
	if (tty) {
		int ctx = engine_max_model_len(ss->e), model_ctx = ss->m->desc.max_position_embeddings;
		fprintf(stderr, "%s: /help lists the commands, /exit or Ctrl-D quits, Ctrl-C stops "
				"an answer\n", ss->m->name);
		if (ctx < model_ctx)
			fprintf(stderr, "context: %d tokens of the model's %d (what the KV cache "
					"holds; --kv-cache-tokens or --max-model-len to change)\n",
				ctx, model_ctx);
	}
	for (;;) {
		char *line = NULL;
		int rc = lineedit_read(le, ">>> ", &line);
		if (rc == LINEEDIT_EOF)
			break;
		if (rc == LINEEDIT_INTERRUPT)
			continue;
		if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) {
			free(line);
			break;
		}
		if (!strcmp(line, "/reset")) {
			reset_history(ss);
			fprintf(stderr, "(conversation cleared)\n");
		} else if (!strcmp(line, "/help")) {
			fputs(chat_help, stderr);
		} else if (is_command(line)) {
			fprintf(stderr, "unknown command %s (/help lists them)\n", line);
		} else if (*line) {
			lineedit_history_add(le, line);
			turn(ss, line, strlen(line));
		}
		free(line);
	}
	lineedit_free(le);
	return 0;
}

static void print_loaded(const struct model *m, uint64_t t0, const char *engine)
{
	fprintf(stderr, "loaded %s (%s, %.1f M parameters, %s weights) in %.2f s; engine: %s\n",
		m->name, m->desc.architecture, (double)m->n_params / 1e6,
		model_load_format_name(m->format), (double)(mono_ns() - t0) / 1e9, engine);
}

/* ---- dyn run MODEL --http: a frontend and a worker in one process ---------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Serve m (owned from here on) on an engine made with eo, behind a
 * frontend on --http-host:--http-port, until SIGINT/SIGTERM.  The frontend
 * finds the worker through a private store in a temporary folder, removed
 * on exit.  Returns the exit status. */
static int run_http(const char *model, struct model *m, const struct engine_opts *eo,
		    uint64_t t0)
{
	char dir[] = "/tmp/dyn-run-XXXXXX";
	struct runtime rt = { 0 };
	struct worker *w = NULL;
	struct frontend *f = NULL;
	struct runtime_hooks hooks;
	struct strbuf url = STRBUF_INIT;
	int status = 1, have_dir = 0, chat = m->has_chat_template;
	const char *served = *served_name ? served_name : cmd_default_served_name(model, &m->src);
	struct worker_conf wc = {
		.served = served, .model = model, .dir = m->src.dir, .ns = "dyn",
		.component = "backend", .host = "127.0.0.1", .role = WORKER_ROLE_AGG,
		.engine = "builtin", .port = 0, .sys_port = -1, .m = m, .eo = eo,
		.max_seqs = eo->max_num_seqs,
	};

	if (!mkdtemp(dir)) {
		cmd_fail("run", "creating a temporary folder: %s", strerror(errno));
		model_free(m);
		return 1;
	}
	have_dir = 1;
	sb_addf(&url, "file://%s", dir);
	if (runtime_init(&rt, 5000) < 0 || store_process_open(&rt, url.buf, STORE_DEFAULT_TTL_MS) < 0) {
		cmd_fail("run", "%s", err_msg());
		model_free(m);
		goto out;
	}
	if (worker_start(&rt, &wc, &w) < 0) {	/* owns m from here */
		cmd_fail("run", "%s", err_msg());
		goto out;
	}
	if (verbose)
		print_loaded(m, t0, worker_engine_describe(w));
	struct frontend_opts fo = { .host = http_host, .port = (int)http_port, .api_key = api_key,
				    .max_local_prefill_length = DISAGG_MAX_LOCAL_PREFILL_DEFAULT,
				    .max_prefill_queue = DISAGG_MAX_PREFILL_QUEUE_DEFAULT,
				    .migration_limit = FRONTEND_MIGRATION_LIMIT_DEFAULT,
				    .tool_call_parser = tool_parser, .reasoning_parser = rsn_parser };
	if (frontend_new(rt.base, rt.store, &fo, &f) < 0) {
		cmd_fail("run", "%s", err_msg());
		goto out;
	}
	frontend_hooks(f, &hooks);
	runtime_add_hooks(&rt, &hooks);
	char base[320];
	http_url_for(base, sizeof(base), http_host, frontend_port(f));
	printf("frontend listening on %s (model %s, engine %s)\n", base, served,
	       worker_engine_describe(w));
	/* A model without a chat template serves completions only. */
	if (chat)
		printf("try: curl %s/v1/chat/completions -H 'Content-Type: "
		       "application/json' -d '{\"model\":\"%s\",\"messages\":[{\"role\":"
		       "\"user\",\"content\":\"Once upon a time\"}]}'\n", base, served);
	else
		printf("try: curl %s/v1/completions -H 'Content-Type: "
		       "application/json' -d '{\"model\":\"%s\",\"prompt\":\"Once upon a time\"}'\n",
		       base, served);
	fflush(stdout);
	runtime_run(&rt);
	status = 0;
out:
	frontend_free(f);
	worker_free(w);
	runtime_free(&rt);
	if (have_dir)
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	sb_release(&url);
	return status;
}

int cmd_run(int argc, char **argv)
{
	int nargs, rc = cmd_options(&run_cmd, argc, argv, &nargs);
	struct session ss = { 0 };
	struct cmd_progress progress = { 0 };
	struct hub_opts hub = { .progress = cmd_hub_progress, .progress_arg = &progress };
	struct cmd_progress load_progress = { 0 };
	struct model_load_opts lo = { .hub = &hub,
				      .progress = cmd_load_progress, .progress_arg = &load_progress };
	int status = 0;

	if (rc >= 0)
		return rc;
	if (nargs != 1)
		return cmd_usage_error("run", "expected one MODEL (see dyn run --help)");
	if (*served_name && !card_name_valid(served_name))
		return cmd_usage_error("run", "bad --served-model-name '%s'", served_name);
	if (!http_mode && (*served_name || *api_key || *tool_parser || *rsn_parser))
		return cmd_usage_error("run", "--%s is for --http",
				       *api_key ? "api-key" : *served_name ? "served-model-name"
				       : *tool_parser ? "tool-call-parser" : "reasoning-parser");
	if (http_mode && *logits_file)
		return cmd_usage_error("run", "--logits-file is not for --http");
	if (cmd_check_parsers("run", tool_parser, rsn_parser))
		return EXIT_USAGE;
	if (embed_mode && (http_mode || prompt_text))
		return cmd_usage_error("run", "--embed reads stdin; it does not go with --%s",
				       http_mode ? "http" : "prompt");
	if (embed_mode)
		return cmd_run_embed(argv[0], eng.threads, eng.max_num_seqs, verbose);
	struct engine_opts eo;
	if (cmd_engine_args_apply("run", &eng, &lo, &eo) ||
	    cmd_check_revision("run", argv[0], eng.revision))
		return EXIT_USAGE;
	hub.revision = eng.revision;

	uint64_t t0 = mono_ns();
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "loading %s ...", argv[0]);
	rc = model_load(argv[0], &lo, &ss.m);
	cmd_progress_done(&progress);
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "\r\x1b[K");
	if (rc < 0)
		return cmd_fail("run", "%s", err_msg());
	if ((status = build_params(ss.m, &ss.params)) != 0)
		goto out;
	if (tok_load(ss.m->src.dir, &ss.tok) < 0) {
		status = cmd_fail("run", "%s", err_msg());
		goto out;
	}
	if (!raw_mode) {
		if (!ss.m->has_chat_template) {
			if (prompt_text || !isatty(STDIN_FILENO))
				LOG_INFO("run", "%s has no chat template: using --raw", argv[0]);
			else
				fprintf(stderr, "%s has no chat template: answering in --raw mode\n",
					argv[0]);
			raw_mode = 1;
		} else if (tmpl_chat_load(ss.m->src.dir, &ss.chat) < 0) {
			status = cmd_fail("run", "%s", err_msg());
			goto out;
		}
	}
	if (http_mode) {	/* the in-process worker owns the model from here on */
		status = run_http(argv[0], ss.m, &eo, t0);
		ss.m = NULL;
		goto out;
	}
	if (*logits_file) {
		if (!(ss.logits_out = fopen(logits_file, "a"))) {
			status = cmd_fail("run", "%s: %s", logits_file, strerror(errno));
			goto out;
		}
		eo.on_logits = on_logits;
		eo.logits_arg = &ss;
	}
	if (engine_new(ss.m, &eo, &ss.e) < 0) {
		status = cmd_fail("run", "%s", err_msg());
		goto out;
	}
	if (verbose)
		print_loaded(ss.m, t0, engine_describe(ss.e));
	ss.tty_out = isatty(STDOUT_FILENO);
	reset_history(&ss);

	struct sigaction sa = { 0 };
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);

	if (prompt_text) {
		status = turn(&ss, prompt_text, strlen(prompt_text)) < 0;
	} else if (!isatty(STDIN_FILENO)) {
		struct strbuf in = STRBUF_INIT;
		char buf[4096];
		size_t n;
		while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
			sb_add(&in, buf, n);
		while (in.len && in.buf[in.len - 1] == '\n')
			sb_setlen(&in, in.len - 1);
		status = turn(&ss, in.buf, in.len) < 0;
		sb_release(&in);
	} else {
		status = interactive(&ss);
	}
out:
	engine_free(ss.e);
	if (ss.logits_out)
		fclose(ss.logits_out);
	sb_release(&ss.logits);
	tmpl_chat_free(ss.chat);
	tok_free(ss.tok);
	model_free(ss.m);
	sb_release(&ss.messages);
	return status;
}
