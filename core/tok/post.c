/*
 * post.c - post-processors: TemplateProcessing, BertProcessing,
 * RobertaProcessing (both as templates: cls, text, sep), ByteLevel (which
 * only adjusts offsets, so nothing for ids) and Sequence.  Only the
 * single-sequence template is used: dyn encodes one text at a time.
 */
#include "core/tok/tok_int.h"
#include "core/tok/json.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void tok_post_free(struct post *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nkids; i++)
		tok_post_free(p->kids[i]);
	free(p->kids);
	free(p->single);
	free(p);
}

static void single_push(struct post *p, int32_t id)
{
	p->single = xrealloc(p->single, (p->nsingle + 1) * sizeof(*p->single));
	p->single[p->nsingle++] = id;
}

/* ["<s>", 1] as in BertProcessing's cls/sep. */
static int token_pair(const struct tj *v, const char *key, const char *path, int32_t *id)
{
	const struct tj *t = tok_tj_get(v, key);
	if (!t || t->type != TJ_ARR || t->len != 2 || t->u.kid[0].type != TJ_STR ||
	    !tok_tj_is_int(&t->u.kid[1], 0, INT32_MAX))
		return err_set(-EINVAL, "%s.%s: expected [\"token\", id]", path, key);
	*id = (int32_t)t->u.kid[1].u.num;
	return 0;
}

static int parse_template(const struct tj *v, const char *path, struct post *p)
{
	const struct tj *single = tok_tj_get(v, "single");
	const struct tj *specials = tok_tj_get(v, "special_tokens");
	char sub[256];

	if (!single || single->type != TJ_ARR)
		return err_set(-EINVAL, "%s.single: expected an array, found %s", path,
			       tok_tj_type_name(single));
	if (specials && specials->type != TJ_OBJ && specials->type != TJ_NULL)
		return err_set(-EINVAL, "%s.special_tokens: expected an object", path);
	for (uint32_t i = 0; i < single->len; i++) {
		const struct tj *piece = &single->u.kid[i];
		tok_jpath(sub, sizeof(sub), path, "single", 0);
		tok_jpath(sub, sizeof(sub), sub, NULL, i);
		if (piece->type != TJ_OBJ || piece->len != 1)
			return err_set(-EINVAL, "%s: expected {\"SpecialToken\": ...} or {\"Sequence\": ...}",
				       sub);
		const struct tj *body = &piece->u.kid[0];
		const char *id;
		int rc = tok_jget_str(body, "id", sub, 1, &id, NULL);
		if (rc < 0)
			return rc;
		if (!strcmp(body->key, "Sequence")) {
			if (!strcmp(id, "A"))
				single_push(p, POST_SEQ_A);
			else if (strcmp(id, "B"))
				return err_set(-EINVAL, "%s.Sequence.id: expected \"A\" or \"B\"", sub);
		} else if (!strcmp(body->key, "SpecialToken")) {
			const struct tj *st = tok_tj_get(specials, id);
			const struct tj *ids = tok_tj_get(st, "ids");
			if (!st)
				return err_set(-EINVAL, "%s: special token \"%s\" is missing from special_tokens",
					       sub, id);
			if (!ids || ids->type != TJ_ARR)
				return err_set(-EINVAL, "%s.special_tokens.%s.ids: expected an array",
					       path, id);
			for (uint32_t k = 0; k < ids->len; k++) {
				if (!tok_tj_is_int(&ids->u.kid[k], 0, INT32_MAX))
					return err_set(-EINVAL, "%s.special_tokens.%s.ids: expected integer ids",
						       path, id);
				single_push(p, (int32_t)ids->u.kid[k].u.num);
			}
		} else {
			return err_set(-EINVAL, "%s: unknown template piece \"%s\"", sub, body->key);
		}
	}
	return 0;
}

int tok_post_parse(const struct tok *tok, const struct tj *v, const char *path,
	       struct post **out)
{
	const char *type;
	int rc;
	struct post *p;

	(void)tok;
	*out = NULL;
	if (!v || v->type == TJ_NULL)
		return 0;
	rc = tok_jget_type(v, path, &type);
	if (rc < 0)
		return rc;
	p = xcalloc(1, sizeof(*p));
	if (!strcmp(type, "Sequence")) {
		const struct tj *list = tok_tj_get(v, "processors");
		char sub[256], kp[256];
		p->type = POST_SEQ;
		if (!list || list->type != TJ_ARR) {
			rc = err_set(-EINVAL, "%s.processors: expected an array, found %s", path,
				     tok_tj_type_name(list));
			goto fail;
		}
		p->kids = xcalloc(list->len ? list->len : 1, sizeof(*p->kids));
		tok_jpath(sub, sizeof(sub), path, "processors", 0);
		for (uint32_t i = 0; i < list->len; i++) {
			rc = tok_post_parse(tok, &list->u.kid[i], tok_jpath(kp, sizeof(kp), sub, NULL, i),
					&p->kids[p->nkids]);
			if (rc < 0)
				goto fail;
			if (p->kids[p->nkids])
				p->nkids++;
		}
	} else if (!strcmp(type, "TemplateProcessing")) {
		p->type = POST_TEMPLATE;
		if ((rc = parse_template(v, path, p)) < 0)
			goto fail;
	} else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
		int32_t cls = 0, sep = 0;
		p->type = POST_TEMPLATE;
		if ((rc = token_pair(v, "cls", path, &cls)) < 0 ||
		    (rc = token_pair(v, "sep", path, &sep)) < 0)
			goto fail;
		single_push(p, cls);
		single_push(p, POST_SEQ_A);
		single_push(p, sep);
	} else if (!strcmp(type, "ByteLevel")) {
		p->type = POST_NOOP;
	} else {
		rc = err_set(-EINVAL, "%s: post-processor type \"%s\" is not supported", path, type);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	tok_post_free(p);
	return rc;
}

void tok_post_apply(const struct post *p, struct tok_ids *ids)
{
	if (!p)
		return;
	switch (p->type) {
	case POST_SEQ:
		for (size_t i = 0; i < p->nkids; i++)
			tok_post_apply(p->kids[i], ids);
		return;
	case POST_NOOP:
		return;
	case POST_TEMPLATE: {
		struct tok_ids res = TOK_IDS_INIT;
		for (size_t i = 0; i < p->nsingle; i++) {
			if (p->single[i] == POST_SEQ_A) {
				for (size_t k = 0; k < ids->n; k++)
					tok_ids_push(&res, ids->v[k]);
			} else {
				tok_ids_push(&res, p->single[i]);
			}
		}
		tok_ids_release(ids);
		*ids = res;
		return;
	}
	}
}
