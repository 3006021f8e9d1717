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
#include "pickle.h"
#include "tzip.h"

#define MAX_COMMON_PKL (16u << 20)

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

int ckpt_megatron_args(const char *ckpt_dir, json_t **out, struct ckpt_err *e)
{
	char path[PATH_MAX];
	struct stat st;
	struct tzip z = { 0 };
	struct ckpt_pickle pk = { 0 };
	uint8_t *pkl = NULL;
	int rc = 0, fd;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/common.pt", ckpt_dir);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0 : ckpt_err_set(e, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ckpt_err_set(e, -EINVAL, "%s: not a regular file", path);
	}
	struct ckpt_blob b = { .fd = fd, .len = (uint64_t)st.st_size, .label = path };
	uint8_t magic[4];
	if ((rc = ckpt_blob_read(&b, 0, magic, sizeof(magic), e)))
		goto out;
	if (memcmp(magic, "PK\3\4", 4) != 0) {
		rc = ckpt_err_set(e, -EINVAL, "%s: byte 0: expected a torch.save zip archive", path);
		goto out;
	}
	if ((rc = tzip_open(&z, &b, e)))
		goto out;
	const struct tzip_entry *pe = tzip_find(&z, "data.pkl");
	if (!pe || pe->size > MAX_COMMON_PKL) {
		rc = ckpt_err_set(e, -EINVAL, "%s: %s/data.pkl %s", path, z.prefix,
				  pe ? "is larger than 16 MiB" : "is missing");
		goto out;
	}
	if (!(pkl = malloc(pe->size ? pe->size : 1))) {
		rc = ckpt_err_set(e, -ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = ckpt_blob_read(&b, pe->data_off, pkl, pe->size, e)))
		goto out;
	char label[PATH_MAX + 16];
	snprintf(label, sizeof(label), "%s: data.pkl", path);
	if ((rc = ckpt_pickle_parse(&pk, pkl, pe->size, label, e)))
		goto out;
	const struct pv *args = pk.root->kind == PV_DICT ? pv_dict_get(pk.root, "args") : NULL;
	if (args && args->kind != PV_NONE)
		rc = namespace_json(args, label, out, e);
out:
	ckpt_pickle_free(&pk);
	free(pkl);
	tzip_free(&z);
	close(fd);
	return rc;
}
