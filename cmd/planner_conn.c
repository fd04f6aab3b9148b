/*
 * planner_conn.c - the live planner's connectors (planner_conn.h).
 */
#include "cmd/planner_conn.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vconn {
	struct planner_conn c;		/* first: the vtable is the handle */
	struct store *st;
	char *ns;
};

static int vput(struct vconn *v, const char *suffix, const char *val)
{
	struct strbuf key = STRBUF_INIT;
	sb_addf(&key, "%s/planner/%s", v->ns, suffix);
	int rc = store_put(v->st, key.buf, val, strlen(val), 0);
	sb_release(&key);
	return rc;
}

static int v_scale(struct planner_conn *c, const char *role, int n)
{
	char suffix[64], val[16];
	snprintf(suffix, sizeof(suffix), "workers/%s", role);
	snprintf(val, sizeof(val), "%d", n);
	return vput((struct vconn *)c, suffix, val);
}

static int v_decision(struct planner_conn *c, const char *json)
{
	return vput((struct vconn *)c, "decision", json);
}

static void v_free(struct planner_conn *c)
{
	struct vconn *v = (struct vconn *)c;
	free(v->ns);
	free(v);
}

int planner_conn_virtual(struct store *st, const char *ns, struct planner_conn **out)
{
	struct vconn *v = xcalloc(1, sizeof(*v));
	v->c = (struct planner_conn){ "virtual", v_scale, v_decision, v_free };
	v->st = st;
	v->ns = xstrdup(ns);
	*out = &v->c;
	return 0;
}
