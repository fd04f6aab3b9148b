/*
 * config.c - the parts of tokenizer_config.json the tokenizer needs: the
 * names of the bos/eos/pad/unk tokens (a string, or an AddedToken object
 * {"content": ...}) and add_bos_token / add_eos_token.  Everything else
 * (chat_template, ...) belongs to other modules.
 */
#include "core/tok/tok_int.h"
#include "core/tok/json.h"
#include "core/err.h"

#include <errno.h>
#include <string.h>

static int special_id(struct tok *tok, const struct tj *root, const char *key,
		      const char *what, int32_t *id)
{
	const struct tj *v = tok_tj_get(root, key);
	const char *s = NULL;
	size_t len = 0;

	*id = -1;
	if (!v || v->type == TJ_NULL)
		return 0;
	if (v->type == TJ_STR) {
		s = v->u.s;
		len = v->len;
	} else if (v->type == TJ_OBJ) {
		int rc = tok_jget_str(v, "content", key, 1, &s, &len);
		if (rc < 0)
			return err_wrap(rc, "%s", what);
	} else {
		return err_set(-EINVAL, "%s: %s: expected a string or an object, found %s",
			       what, key, tok_tj_type_name(v));
	}
	*id = tok_token_to_id(tok, s, len);
	return 0;
}

int tok_config_apply(struct tok *tok, char *json, size_t len, const char *what)
{
	struct tj_doc doc;
	int rc = tok_tj_parse(&doc, json, len, 0, what);
	int b;

	if (rc < 0)
		return rc;
	if (doc.root.type != TJ_OBJ) {
		tok_tj_free(&doc);
		return err_set(-EINVAL, "%s: expected a JSON object", what);
	}
	if ((rc = special_id(tok, &doc.root, "bos_token", what, &tok->bos_id)) < 0 ||
	    (rc = special_id(tok, &doc.root, "eos_token", what, &tok->eos_id)) < 0 ||
	    (rc = special_id(tok, &doc.root, "pad_token", what, &tok->pad_id)) < 0 ||
	    (rc = special_id(tok, &doc.root, "unk_token", what, &tok->unk_id)) < 0)
		goto out;
	if ((rc = tok_jget_bool(&doc.root, "add_bos_token", what, -1, &b)) < 0)
		goto out;
	tok->add_bos = b;
	if ((rc = tok_jget_bool(&doc.root, "add_eos_token", what, -1, &b)) < 0)
		goto out;
	tok->add_eos = b;
out:
	tok_tj_free(&doc);
	return rc;
}
