/*
 * model_int.h - internals shared by the files of core/model/ that build a
 * struct model (not public API; see model.h).
 */
#ifndef DYN_MODEL_INT_H
#define DYN_MODEL_INT_H

#include "core/model/model.h"
#include "core/model/safetensors.h"

struct gguf;
struct strbuf;

enum spec_kind { SPEC_EMBED, SPEC_MATRIX, SPEC_NORM, SPEC_BIAS };

/* One tensor the forward pass needs, with the shape the config implies. */
struct tensor_spec {
	struct model_tensor *slot;	/* where it goes in m->w */
	enum spec_kind kind;
	int64_t fan_in;			/* for dummy initialisation */
	int rope_heads;			/* q/k projections and biases: their heads */
	char name[80];
};

struct model_priv {
	struct tensor_spec *specs;
	size_t nspecs;
	struct st_set *st;		/* the mapped checkpoint's tensors */
	struct gguf *gguf;		/* a GGUF checkpoint (st points into it) */
	int rope_permuted;		/* q/k rows in llama.cpp's RoPE order */
	void *arena;			/* dummy weights, or widened/realigned copies */
	size_t arena_len;
};

/* Allocate m->w.layers and m->priv->specs from m->desc; every slot gets
 * its name, ndim and shape (dtype/data still unset). */
void model_specs_build(struct model *m);

/* Does a load quantizing to q (model_load_opts.quantize) quantize s? */
int model_spec_quantized(const struct tensor_spec *s, enum dtype q);

/* Bind the specs to the checkpoint at path (dir, file or index);
 * o->flags and o->progress apply. */
int model_bind_safetensors(struct model *m, const char *path, const struct model_load_opts *o);

/* MODEL_LOAD_PANELS on bound specs: each matrix of a block type repacked
 * in place into its panel type (dtype_repack); 0 or -errno. */
int model_repack_panels(struct model *m);

/* Bind the specs to the tensors of m->priv->st (o->flags, o->quantize
 * and o->progress apply). */
int model_bind_set(struct model *m, const struct model_load_opts *o);

/* Bind the specs to the GGUF file at path (see gguf.h; model_gguf.c). */
int model_bind_gguf(struct model *m, const char *path, const struct model_load_opts *o);

/* A folder's one .gguf file (a copy of its path) when the folder has no
 * config.json, else NULL. */
char *model_gguf_in_dir(const char *dir);
/* model_resolve() for a .gguf file (see model.h). */
int model_gguf_resolve(const char *path, struct model_source *src);
/* Remove the folder model_gguf_resolve() made. */
void model_gguf_dir_remove(const char *dir);
void model_gguf_free(struct gguf *g);

/* GGUF tokenizer metadata as the text of the tokenizer.json and
 * tokenizer_config.json that describe the same tokenizer (gguf_tok.c). */
int model_gguf_tokenizer(const struct gguf *g, struct strbuf *json, struct strbuf *config);

/* Fill the specs with generated weights of type dt (F32/F16/BF16);
 * o->seed, o->flags and o->progress apply. */
int model_bind_dummy(struct model *m, const struct model_load_opts *o, enum dtype dt);

/* An anonymous, page-aligned mapping of len bytes (len > 0). */
void *model_arena_alloc(size_t len);

#endif
