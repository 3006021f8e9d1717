/* margs.c - see margs.h. */
#include "config.h"
#include "margs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "dirlist.h"
#include "item.h"
#include "pickle.h"
#include "tzip.h"


/* A scalar pickle value as JSON, or NULL when it is of another kind. */
static json_t *scalar(const struct pv *v)
{
	switch (v->kind) {
	case PV_NONE:
		return json_null();
	case PV_BOOL:
		return json_boolean(v->u.b);
	case PV_INT:
		return json_integer(v->u.i);
	case PV_FLOAT:
		return json_real(v->u.f);
	case PV_STR:
		return json_stringn(v->u.str.s, v->u.str.len);  /* NULL on invalid UTF-8 */
	default:
		return NULL;
	}
}

/* An attribute value: a scalar, or a list / tuple of scalars. */
static json_t *value(const struct pv *v)
{
	if (v->kind != PV_LIST && v->kind != PV_TUPLE)
		return scalar(v);
	json_t *a = json_array();
	for (size_t i = 0; a && i < v->u.seq.n; i++) {
		json_t *x = scalar(v->u.seq.v[i]);
		if (!x || json_array_append_new(a, x)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* The Namespace's state dict as a JSON object. */
static int namespace_json(const struct pv *ns, const char *label, json_t **out,
			  struct ckpt_err *e)
{
	const struct pv *st = pv_obj_state(ns);
	if (!pv_is_obj(ns, PC_NAMESPACE) || !st || st->kind != PV_DICT)
		return ckpt_err_set(e, -EINVAL, "%s: \"args\" is a %s, expected an argparse.Namespace "
				    "with its attributes", label,
				    ns->kind == PV_OBJ ? ns->u.obj.cls->u.g.name : pv_kind_name(ns->kind));
	json_t *o = json_object();
	if (!o)
		return ckpt_err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i + 1 < st->u.seq.n; i += 2) {
		const char *key;
		if (pv_get_str(st->u.seq.v[i], &key))
			continue;  /* attribute names are strings; anything else is not an arg */
		json_t *v = value(st->u.seq.v[i + 1]);
		if (v && json_object_set_new(o, key, v)) {
			json_decref(o);
			return ckpt_err_set(e, -ENOMEM, "out of memory");
		}
	}
	*out = o;
	return 0;
}

/* The args in the torch.save archive b (common.pt, or the common_state
 * item): *out stays NULL when its root holds no "args". */
static int args_from_archive(const struct ckpt_blob *b, json_t **out, struct ckpt_err *e)
{
	struct tzip z = { 0 };
	struct ckpt_pickle pk = { 0 };
	uint8_t *pkl = NULL;
	char label[PATH_MAX + 64];
	int rc;

	if ((rc = ckpt_torchsave_open(b, &z, &pk, &pkl, e)))
		return rc;
	snprintf(label, sizeof(label), "%s: data.pkl", b->label);
	const struct pv *root = pk.root;
	if ((root->kind == PV_LIST || root->kind == PV_TUPLE) && root->u.seq.n == 1)
		root = root->u.seq.v[0];  /* a ShardedObject's value may come wrapped in a list */
	const struct pv *args = root->kind == PV_DICT ? pv_dict_get(root, "args") : NULL;
	if (args && args->kind != PV_NONE)
		rc = namespace_json(args, label, out, e);
	ckpt_pickle_free(&pk);
	free(pkl);
	tzip_free(&z);
	return rc;
}

/* Megatron's common state inside the DCP payload: the bytes entry
 * common_state (ShardedObject key common_state/shard_0_1). */
static const struct ckpt_bytes_item *common_state_item(const struct ckpt_catalog *c)
{
	static const char key[] = "common_state";
	for (size_t i = 0; i < c->nbitems; i++) {
		const char *n = c->bitems[i].name;
		if (!strncmp(n, key, sizeof(key) - 1) && (n[sizeof(key) - 1] == '\0' || n[sizeof(key) - 1] == '/'))
			return &c->bitems[i];
	}
	return NULL;
}

int ckpt_megatron_args(const struct ckpt_catalog *c, json_t **out, char *where, size_t n,
		       struct ckpt_err *e)
{
	char path[PATH_MAX + 64];
	struct stat st;
	int rc = 0, fd;

	*out = NULL;
	snprintf(where, n, "common.pt");
	snprintf(path, sizeof(path), "%s/common.pt", c->realdir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			rc = ckpt_err_set(e, -EINVAL, "%s: not a regular file", path);
		} else {
			struct ckpt_blob b = { .fd = fd, .len = (uint64_t)st.st_size, .label = path };
			rc = args_from_archive(&b, out, e);
		}
		close(fd);
		if (rc || *out)
			return rc;
	} else if (errno != ENOENT) {
		return ckpt_err_set(e, -errno, "%s: %s", path, strerror(errno));
	}
	const struct ckpt_bytes_item *bi = common_state_item(c);
	if (!bi)
		return 0;
	snprintf(where, n, "%s", bi->name);
	snprintf(path, sizeof(path), "%s/%s (item '%s' at file offset %llu)", c->dir, bi->relpath, bi->name,
		 (unsigned long long)bi->off);
	if (bi->zstd)
		return ckpt_err_set(e, -ENOTSUP, "%s: the item is zstd-compressed; reading the Megatron "
				    "args from it is not supported", path);
	if ((fd = ckpt_open_inside(c->realdir, bi->relpath, e)) < 0)
		return fd;
	if (fstat(fd, &st) != 0 || bi->off > (uint64_t)st.st_size ||
	    bi->len > (uint64_t)st.st_size - bi->off) {
		rc = ckpt_err_set(e, -EINVAL, "%s: the item's %llu bytes leave the file", path,
				  (unsigned long long)bi->len);
	} else {
		struct ckpt_blob b = { .fd = fd, .base = bi->off, .len = bi->len, .label = path };
		rc = args_from_archive(&b, out, e);
	}
	close(fd);
	return rc;
}
