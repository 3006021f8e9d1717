/* pvalue.c - reading the value trees the pickle reader builds (pickle.h). */
#include "config.h"
#include "pvalue.h"

#include <errno.h>
#include <string.h>

const char *pv_kind_name(enum pv_kind kind)
{
	static const char *const names[] = {
		"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict",
		"set", "global", "object", "persistent id", "mark",
	};
	return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

struct pv *pv_dict_get(const struct pv *d, const char *key)
{
	if (!d || d->kind != PV_DICT)
		return NULL;
	size_t kl = strlen(key);
	for (size_t i = 0; i + 1 < d->u.seq.n; i += 2) {
		const struct pv *kv = d->u.seq.v[i];
		if (kv->kind == PV_STR && kv->u.str.len == kl && memcmp(kv->u.str.s, key, kl) == 0)
			return d->u.seq.v[i + 1];
	}
	return NULL;
}

int pv_is_obj(const struct pv *v, enum pc_id id)
{
	return v && v->kind == PV_OBJ && v->u.obj.cls->u.g.id == id;
}

struct pv *pv_obj_state(const struct pv *v)
{
	return v && v->kind == PV_OBJ ? v->u.obj.state : NULL;
}

int pv_get_int(const struct pv *v, int64_t *out)
{
	if (!v || (v->kind != PV_INT && v->kind != PV_BOOL))
		return -EINVAL;
	*out = v->kind == PV_INT ? v->u.i : v->u.b;
	return 0;
}

int pv_get_str(const struct pv *v, const char **out)
{
	/* a NUL inside would silently cut the string short in C */
	if (!v || v->kind != PV_STR || strlen(v->u.str.s) != v->u.str.len)
		return -EINVAL;
	*out = v->u.str.s;
	return 0;
}

int pv_get_shape(const struct pv *v, int64_t *dims, int max, int *ndim)
{
	if (pv_is_obj(v, PC_TORCH_SIZE)) {
		const struct pv *args = v->u.obj.args;
		if (args->u.seq.n != 1)
			return -EINVAL;
		v = args->u.seq.v[0];
	}
	if (!v || (v->kind != PV_TUPLE && v->kind != PV_LIST) || v->u.seq.n > (size_t)max)
		return -EINVAL;
	for (size_t i = 0; i < v->u.seq.n; i++)
		if (pv_get_int(v->u.seq.v[i], &dims[i]) || dims[i] < 0)
			return -EINVAL;
	*ndim = (int)v->u.seq.n;
	return 0;
}
