/*
 * tok.h - tokenizers that match Hugging Face `tokenizers` exactly.
 *
 * Loads a model's own tokenizer.json (plus tokenizer_config.json for the
 * bos/eos names) and encodes text to token ids and ids back to text with
 * the same results as the Rust `tokenizers` library, for BPE models of
 * both families: byte-level (GPT-2, Llama 3, Qwen, DeepSeek, gpt-oss) and
 * SentencePiece-style with U+2581 and byte fallback (Llama 2, Mistral,
 * Gemma, TinyLlama), and WordPiece models (BERT and its sentence-embedding
 * descendants: BertNormalizer, BertPreTokenizer, [CLS] ... [SEP]).
 * Unigram models are refused with a clear "unsupported" error.
 *
 * Pipeline (as in HF): added tokens are split out of the raw text (longest
 * match first, honouring single_word/lstrip/rstrip), each remaining piece
 * is normalized, normalized added tokens are split out, the pre-tokenizer
 * cuts words, the model (BPE or WordPiece) turns words into ids, and the post-processor
 * adds BOS/EOS when add_special_tokens is set.
 *
 * The truncation and padding settings a tokenizer.json may carry are not
 * applied (transformers resets them too unless a caller asks for them).
 *
 * WordPiece's BertNormalizer and BertPreTokenizer class characters (control,
 * format, nonspacing mark, punctuation) by utf8proc's Unicode 15 tables;
 * HF uses the unicode_categories crate, whose tables predate Unicode 10, so
 * the few hundred such characters assigned since may tokenize differently.
 *
 * Invalid UTF-8 input: Python strings cannot hold it, so HF never sees it.
 * dyn replaces each maximal ill-formed subpart with U+FFFD first, exactly
 * like Python's bytes.decode("utf-8", "replace"), and encodes the result.
 *
 * Ownership: tok_load() returns a tokenizer the caller frees with
 * tok_free().  Id arrays (struct tok_ids) and strbufs are caller-owned.
 * Strings returned by lookups point into the tokenizer and live as long
 * as it does.
 *
 * Thread-safety: a loaded tokenizer is immutable; encode, decode and
 * lookups may run concurrently from any number of threads.  Encoding keeps
 * per-thread state internally (a word cache of about 0.5 MB for each of
 * the last two tokenizers a thread used, and scratch buffers), freed when
 * the thread exits.  A struct tok_stream belongs to one stream and one
 * thread at a time.
 *
 * Errors: functions return 0 (or a count) / negative errno and set
 * err_msg() (core/err.h); nothing here prints.
 */
#ifndef DYN_TOK_H
#define DYN_TOK_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;
struct tok;

/* ---- loading ------------------------------------------------------------ */

/*
 * Load a tokenizer.  path is a model directory (tokenizer.json and, if
 * present, tokenizer_config.json inside it) or the path of a
 * tokenizer.json file (tokenizer_config.json is then looked for next to
 * it).  A malformed, truncated or unsupported file gives -EINVAL with a
 * message naming the problem (file, line/column or JSON path).
 */
int tok_load(const char *path, struct tok **out);

/* Load from memory: json is the tokenizer.json text, config the
 * tokenizer_config.json text (NULL if none).  what names the source in
 * error messages. */
int tok_load_mem(const char *json, size_t len, const char *config,
		 size_t config_len, const char *what, struct tok **out);

void tok_free(struct tok *tok);

/* ---- encoding ----------------------------------------------------------- */

struct tok_ids {
	int32_t *v;
	size_t n, alloc;
};
#define TOK_IDS_INIT { NULL, 0, 0 }
void tok_ids_push(struct tok_ids *ids, int32_t id);
void tok_ids_release(struct tok_ids *ids);

/*
 * Append the ids of text[0..len) to out.  add_special_tokens applies the
 * tokenizer's post-processor (BOS/EOS as configured), like HF's
 * encode(text, add_special_tokens=...).  Returns 0 or a negative code.
 */
int tok_encode(const struct tok *tok, const char *text, size_t len,
	       int add_special_tokens, struct tok_ids *out);

/* ---- decoding ----------------------------------------------------------- */

/*
 * Append the text of ids[0..n) to out, like HF's decode(ids,
 * skip_special_tokens).  Unknown ids are skipped (as HF does).  The text
 * is valid UTF-8 (byte sequences that do not form characters decode to
 * U+FFFD, as in HF).
 */
int tok_decode(const struct tok *tok, const int32_t *ids, size_t n,
	       int skip_special_tokens, struct strbuf *out);
/*
 * The text token id adds after the context ctx[0..n) (special tokens of
 * the context skipped), into out (reset first): what a reader sees it
 * add, e.g. " and" for "\u2581and" after a word, where decoding it alone
 * gives "and".  A special id reads as itself.  For logprob alternatives,
 * which have no place in the text.
 */
void tok_decode_after(const struct tok *tok, const int32_t *ctx, size_t n, int32_t id,
		      struct strbuf *out);

/*
 * Incremental detokenizer for streaming: feed ids one at a time, get text
 * deltas.  Every delta is complete UTF-8 (a character split across tokens
 * or byte-fallback pieces is held back until it is complete) and the
 * concatenation of all deltas plus the final flush equals
 * tok_decode(all ids), for any ids, with skip_special_tokens on or off.
 * Text from a trailing run of byte-fallback tokens ("<0xXX>") is held
 * back until a token of another kind (or the flush) ends the run: HF's
 * ByteFallback decoder decodes a run as a whole, one U+FFFD per byte when
 * the run is not valid UTF-8, so its start is not final before its end.
 */
struct tok_stream;
struct tok_stream *tok_stream_new(const struct tok *tok, int skip_special_tokens);
/* Give the stream ids that precede it (e.g. the prompt) as context, so the
 * first generated token decodes as it would mid-text; nothing is emitted
 * for them.  Call before the first tok_stream_put. */
void tok_stream_prime(struct tok_stream *st, const int32_t *ids, size_t n);
/* Append the text that id completes (possibly nothing) to delta. */
int tok_stream_put(struct tok_stream *st, int32_t id, struct strbuf *delta);
/* End of stream: append whatever was held back (e.g. an incomplete
 * character, as U+FFFD) to delta. */
int tok_stream_flush(struct tok_stream *st, struct strbuf *delta);
void tok_stream_free(struct tok_stream *st);

/* ---- vocabulary --------------------------------------------------------- */

/* Number of ids: one more than the largest id (model and added tokens). */
size_t tok_vocab_size(const struct tok *tok);
/* The id of a token string (added tokens first, then the model's
 * vocabulary, as HF token_to_id), or -1. */
int32_t tok_token_to_id(const struct tok *tok, const char *s, size_t len);
/* The token string of id (not NUL-terminated: see *len), or NULL. */
const char *tok_id_to_token(const struct tok *tok, int32_t id, size_t *len);
/* The bytes id adds mid-text into out (reset first): byte-level
 * characters mapped back to their bytes, "<0xXX>" byte-fallback tokens to
 * their byte, U+2581 to a space.  -1 for special tokens and unknown ids. */
int tok_token_bytes(const struct tok *tok, int32_t id, struct strbuf *out);
/* Is id a special token (skipped by skip_special_tokens)? */
int tok_is_special(const struct tok *tok, int32_t id);

/* Special tokens named by tokenizer_config.json (bos_token, eos_token,
 * pad_token, unk_token), -1 where absent. */
int32_t tok_bos_id(const struct tok *tok);
int32_t tok_eos_id(const struct tok *tok);
int32_t tok_pad_id(const struct tok *tok);
int32_t tok_unk_id(const struct tok *tok);
/* tokenizer_config.json add_bos_token / add_eos_token (-1 when unset). */
int tok_add_bos(const struct tok *tok);
int tok_add_eos(const struct tok *tok);

#endif
